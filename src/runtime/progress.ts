/**
 * Progress for long loops: count, rate and ETA, redrawn in place on a terminal; on a pipe or a file, a
 * single line when the stage finishes (and every `logEvery` seconds for very long stages).
 */
export interface ProgressOptions {
  /** Unit shown after the rate, e.g. "questions". */
  unit?: string;
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
  /** On a non-terminal, also print a line every this many seconds (default 60). */
  logEvery?: number;
}

export interface Progress {
  tick(n?: number, note?: string): void;
  done(note?: string): void;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Starts a progress display for `total` items of work named `label`. */
export function progress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const unit = opts.unit ?? 'items';
  const start = Date.now();
  let count = 0, lastDraw = 0, lastLog = start, note = '';
  const line = () => {
    const secs = (Date.now() - start) / 1000;
    const rate = count / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (total - count) / rate : Infinity;
    const pct = total > 0 ? ((100 * count) / total).toFixed(1) : '100';
    // under one item in 10 s the rate reads as time per item ("3m25s per layer"), not "0.00 layers/s"
    const speed = count > 0 && rate < 0.1 ? `${fmtTime(1 / rate)} per ${unit.replace(/s$/, '')}` : `${rate.toFixed(rate < 10 ? 2 : 0)} ${unit}/s`;
    return `${label}: ${Math.floor(count)}/${total} (${pct}%) ${speed}, elapsed ${fmtTime(secs)}, ETA ${fmtTime(eta)}${note ? ` ${note}` : ''}`;
  };
  return {
    tick(n = 1, nt?: string) {
      count += n;
      if (nt !== undefined) note = nt;
      if (opts.quiet) return;
      const now = Date.now();
      if (tty && now - lastDraw > 100) {
        stream.write(`\r\x1b[K${line()}`);
        lastDraw = now;
      } else if (!tty && now - lastLog > (opts.logEvery ?? 60) * 1000) {
        stream.write(`${line()}\n`);
        lastLog = now;
      }
    },
    done(nt?: string) {
      if (nt !== undefined) note = nt;
      if (opts.quiet) return;
      stream.write(`${tty ? '\r\x1b[K' : ''}${line()}\n`);
    },
  };
}
