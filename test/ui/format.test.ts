import { describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/app/models.ts';

describe('formatBytes', () => {
  it('shows a slow transfer rate in whole bytes (it showed "0.9898539965355109 B/s")', () => {
    expect(formatBytes(0.9898539965355109)).toBe('1 B');
    expect(formatBytes(999.4)).toBe('999 B');
    expect(formatBytes(1234)).toBe('1.2 kB');
    expect(formatBytes(548e6)).toBe('548 MB');
    expect(formatBytes(null)).toBe('?');
  });
});
