/** One-line progress on stderr: a live bar on a terminal, periodic lines otherwise. */
export class Progress {
  private readonly tty: boolean;
  private lastLen = 0;

  constructor(
    private readonly total: number,
    private readonly every: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  update(s: {
    step: number;
    epoch: number;
    epochs: number;
    loss: number;
    /** Pretext accuracy, for methods that have one. */
    accuracy?: number | undefined;
    imgPerSec: number;
    etaSec: number;
  }): void {
    if (!this.enabled) return;
    const done = s.step + 1;
    const width = 24;
    const filled = Math.round((width * done) / this.total);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    const line =
      `epoch ${s.epoch + 1}/${s.epochs} [${bar}] ${done}/${this.total} ` +
      `loss ${s.loss.toFixed(4)} ${s.accuracy === undefined ? '' : `acc ${(100 * s.accuracy).toFixed(1)}% `}` +
      `${s.imgPerSec.toFixed(0)} img/s ETA ${formatDuration(s.etaSec)}`;
    if (this.tty) {
      this.out.write(`\r${line}${' '.repeat(Math.max(0, this.lastLen - line.length))}`);
      this.lastLen = line.length;
    } else if (done % this.every === 0 || done === this.total || done === 1) {
      this.out.write(`${line}\n`);
    }
  }

  /** Prints a message on its own line without breaking the bar. */
  log(message: string): void {
    if (this.tty && this.lastLen > 0) {
      this.out.write(`\r${' '.repeat(this.lastLen)}\r`);
      this.lastLen = 0;
    }
    this.out.write(`${message}\n`);
  }
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}
