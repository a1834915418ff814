// Draws the PWA icons (public/icons/*.png) with no dependencies: a speech bubble with three dots
// on a blue-violet gradient. Run: node tools/make-icons.mjs
// "any" icons are a rounded square on transparency; the maskable one fills the whole square and
// keeps the motif inside the central 80 % safe zone.
import { writeFileSync, mkdirSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const OUT = new URL('../public/icons/', import.meta.url);
mkdirSync(OUT, { recursive: true });

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function png(size, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    rgba.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

// Signed distances (negative inside), in units of the icon's side (0..1).
const roundRect = (x, y, cx, cy, hw, hh, r) => {
  const qx = Math.abs(x - cx) - hw + r, qy = Math.abs(y - cy) - hh + r;
  return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - r;
};
const circle = (x, y, cx, cy, r) => Math.hypot(x - cx, y - cy) - r;
function triangle(x, y, [ax, ay], [bx, by], [cx, cy]) {
  const e = [[ax, ay, bx, by], [bx, by, cx, cy], [cx, cy, ax, ay]];
  let d = Infinity, sign = 1;
  for (const [x0, y0, x1, y1] of e) {
    const ex = x1 - x0, ey = y1 - y0, wx = x - x0, wy = y - y0;
    const t = Math.max(0, Math.min(1, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
    d = Math.min(d, Math.hypot(wx - ex * t, wy - ey * t));
    if (ex * wy - ey * wx < 0) sign = -1;
  }
  return sign > 0 ? -d : d; // counter-clockwise triangle: inside when all cross products ≥ 0
}

function draw(size, maskable) {
  const img = Buffer.alloc(size * size * 4);
  const px = 1 / size;
  const k = maskable ? 0.78 : 1; // motif scale (maskable: inside the safe zone)
  const cover = (d) => Math.max(0, Math.min(1, 0.5 - d / px));
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const x = (i + 0.5) / size, y = (j + 0.5) / size;
      const bgD = maskable ? -1 : roundRect(x, y, 0.5, 0.5, 0.46, 0.46, 0.2);
      const a = cover(bgD);
      // Diagonal gradient #1f6feb → #8957e5.
      const t = (x + y) / 2;
      let r = 0x1f + (0x89 - 0x1f) * t, g = 0x6f + (0x57 - 0x6f) * t, b = 0xeb + (0xe5 - 0xeb) * t;
      // Bubble (in motif coordinates around the centre).
      const mx = 0.5 + (x - 0.5) / k, my = 0.5 + (y - 0.5) / k;
      const bubble = Math.min(
        roundRect(mx, my, 0.5, 0.46, 0.28, 0.2, 0.1),
        triangle(mx, my, [0.3, 0.6], [0.42, 0.62], [0.27, 0.76]),
      ) * k;
      const w = cover(bubble);
      r = r * (1 - w) + 255 * w; g = g * (1 - w) + 255 * w; b = b * (1 - w) + 255 * w;
      // Three dots inside the bubble.
      let dot = Infinity;
      for (const cx of [0.38, 0.5, 0.62]) dot = Math.min(dot, circle(mx, my, cx, 0.46, 0.045) * k);
      const dd = cover(dot);
      r = r * (1 - dd) + 0x4a * dd; g = g * (1 - dd) + 0x5b * dd; b = b * (1 - dd) + 0xd8 * dd;
      const o = (j * size + i) * 4;
      img[o] = Math.round(r); img[o + 1] = Math.round(g); img[o + 2] = Math.round(b); img[o + 3] = Math.round(255 * a);
    }
  }
  return png(size, img);
}

writeFileSync(new URL('icon-192.png', OUT), draw(192, false));
writeFileSync(new URL('icon-512.png', OUT), draw(512, false));
writeFileSync(new URL('maskable-512.png', OUT), draw(512, true));
writeFileSync(new URL('maskable-192.png', OUT), draw(192, true));
console.log('wrote public/icons/{icon-192,icon-512,maskable-192,maskable-512}.png');
