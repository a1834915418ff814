import { describe, expect, it } from 'vitest';
import type { DownloadProgress } from '../../src/store/progress.ts';
import { ProgressReporter } from '../../src/store/progress.ts';

describe('ProgressReporter', () => {
  it('reports percent, a windowed rate and the time left, throttled', () => {
    let t = 0;
    const seen: DownloadProgress[] = [];
    const r = new ProgressReporter('m', (p) => seen.push(p), () => t);
    r.phase('downloading', 0, 10_000_000);
    expect(seen.at(-1)).toMatchObject({ phase: 'downloading', percent: 0, bytesPerSecond: 0, secondsLeft: null });
    // 1 MB/s for 3 s, in pieces every 10 ms: throttled to about one callback per 100 ms.
    for (let i = 1; i <= 300; i++) {
      t = i * 10;
      r.received(i * 10_000, 10_000_000);
    }
    expect(seen.length).toBeGreaterThan(25);
    expect(seen.length).toBeLessThan(40);
    const last = seen.at(-1)!;
    expect(last.bytesPerSecond).toBeCloseTo(1e6, -3);
    expect(last.percent).toBeCloseTo(30, 0);
    expect(last.secondsLeft).toBeCloseTo(7, 0);
    // The link slows to 100 kB/s: after a window the estimate follows.
    for (let i = 1; i <= 1000; i++) {
      t = 3000 + i * 10;
      r.received(3_000_000 + i * 1000, 10_000_000);
    }
    expect(seen.at(-1)!.bytesPerSecond).toBeCloseTo(1e5, -3);
    r.received(3_000_000 + 1000 * 1000, 10_000_000, true);
    expect(seen.at(-1)!.bytesDone).toBe(4_000_000);
  });

  it('has no percent or time left while the size is unknown', () => {
    let t = 0;
    const seen: DownloadProgress[] = [];
    const r = new ProgressReporter('m', (p) => seen.push(p), () => t);
    r.received(0, null);
    t = 1000;
    r.received(5000, null, true);
    expect(seen.at(-1)).toMatchObject({ percent: null, secondsLeft: null, bytesPerSecond: 5000 });
  });
});
