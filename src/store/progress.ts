// Download progress as the UI shows it, with a transfer rate over the last few seconds so that
// "seconds left" follows the connection's current speed rather than its average since the start.

export type DownloadPhase = 'config' | 'rehash' | 'downloading' | 'verifying';

export interface DownloadProgress {
  modelId: string;
  phase: DownloadPhase;
  /** Bytes of model.safetensors stored or received (during 'rehash': re-read from storage). */
  bytesDone: number;
  bytesTotal: number | null;
  /** 0..100, or null while the size is unknown. */
  percent: number | null;
  /** Network throughput over the last few seconds; 0 outside 'downloading'. */
  bytesPerSecond: number;
  secondsLeft: number | null;
}

const WINDOW_MS = 5000;
/** Callbacks at most this often while bytes stream in: a fast link yields thousands of pieces a second. */
const INTERVAL_MS = 100;

export class ProgressReporter {
  private samples: Array<{ t: number; bytes: number }> = [];
  private lastEmit = -Infinity;

  constructor(
    private readonly modelId: string,
    private readonly listener: ((p: DownloadProgress) => void) | undefined,
    private readonly now: () => number,
  ) {}

  /** Reports a phase change or a milestone; always delivered. */
  phase(phase: DownloadPhase, bytesDone: number, bytesTotal: number | null): void {
    this.samples = [];
    this.emit(phase, bytesDone, bytesTotal, 0);
  }

  /** Reports streamed bytes; throttled, and `force` for the last one. */
  received(bytesDone: number, bytesTotal: number | null, force = false): void {
    const t = this.now();
    this.samples.push({ t, bytes: bytesDone });
    while (this.samples.length > 2 && t - this.samples[0].t > WINDOW_MS) this.samples.shift();
    if (!force && t - this.lastEmit < INTERVAL_MS) return;
    this.emit('downloading', bytesDone, bytesTotal, this.rate());
  }

  private rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const dt = (last.t - first.t) / 1000;
    return dt > 0 ? (last.bytes - first.bytes) / dt : 0;
  }

  private emit(phase: DownloadPhase, bytesDone: number, bytesTotal: number | null, bytesPerSecond: number): void {
    this.lastEmit = this.now();
    if (!this.listener) return;
    const left = bytesTotal === null ? null : Math.max(0, bytesTotal - bytesDone);
    this.listener({
      modelId: this.modelId,
      phase,
      bytesDone,
      bytesTotal,
      percent: bytesTotal ? Math.min(100, (100 * bytesDone) / bytesTotal) : null,
      bytesPerSecond,
      secondsLeft: left !== null && bytesPerSecond > 0 ? left / bytesPerSecond : null,
    });
  }
}
