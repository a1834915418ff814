import { describe, expect, it } from 'vitest';
import { parseContentRange, responseFacts, statedSha256 } from '../../src/store/http.ts';

const SHA = 'e72826638553a74a04e68e7a03b21807d47a35347fd95aec3be75a8c3cab8b65';
const res = (status: number, headers: Record<string, string>): Response => new Response(status === 206 || status === 200 ? 'x' : null, { status, headers });

describe('response headers', () => {
  it('parses Content-Range', () => {
    expect(parseContentRange('bytes 100-199/1000')).toEqual({ start: 100, end: 199, total: 1000 });
    expect(parseContentRange('bytes 0-9/*')).toEqual({ start: 0, end: 9, total: null });
    expect(parseContentRange('bytes */1000')).toBeNull();
    expect(parseContentRange(null)).toBeNull();
  });

  it('finds a sha256 in x-content-sha256 or a (quoted, weak, uppercase) x-linked-etag, and nothing else', () => {
    expect(statedSha256(new Headers({ 'x-content-sha256': SHA }))).toBe(SHA);
    expect(statedSha256(new Headers({ 'x-linked-etag': `"${SHA.toUpperCase()}"` }))).toBe(SHA);
    expect(statedSha256(new Headers({ 'x-linked-etag': `W/"${SHA}"` }))).toBe(SHA);
    // A git blob id (40 hex) or an md5 ETag is not a sha256.
    expect(statedSha256(new Headers({ 'x-linked-etag': '"9b9c3a1f0e0d4b0d8c2f0b7a6e5d4c3b2a190817"' }))).toBeNull();
    expect(statedSha256(new Headers({ etag: `"${SHA}"` }))).toBeNull();
  });

  it('reads where a body starts and the whole size, ignoring compressed lengths and weak ETags', () => {
    expect(responseFacts(res(200, { 'content-length': '1000', etag: '"abc"' }), 0)).toEqual({ start: 0, total: 1000, sha256: null, etag: '"abc"' });
    expect(responseFacts(res(206, { 'content-range': 'bytes 400-999/1000', etag: 'W/"abc"' }), 400)).toMatchObject({ start: 400, total: 1000, etag: null });
    expect(responseFacts(res(206, { 'content-length': '600' }), 400)).toMatchObject({ start: 400, total: 1000 });
    expect(responseFacts(res(200, { 'content-length': '10', 'content-encoding': 'gzip' }), 0).total).toBeNull();
    expect(() => responseFacts(res(404, {}), 0)).toThrow(/not found/);
    expect(() => responseFacts(res(500, {}), 0)).toThrow(/had a server error \(500\)/);
  });
});
