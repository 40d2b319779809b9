/**
 * Temporary paths a running command must not leave behind when it stops early. `removeOnExit(path)`
 * removes `path` when the process exits (process.exit included) or is ended by SIGINT, SIGTERM or
 * SIGHUP, until the returned function is called (the path was renamed into place or removed).
 *
 * A signal is handled only while no other handler is installed: then the path is removed and the
 * signal raised again, so the process ends as the signal's default would (exit status 128+n). When a
 * command handles the signal itself (eval's and sweep's Ctrl-C finishes the current step and saves
 * it), the handler leaves the path to that command, whose error path removes it. A kill -9 cannot be
 * caught: what it leaves is recognised by its pid (src/io/output-dir.ts).
 */
import { rmSync } from 'node:fs';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** Marks this module's signal handlers, to tell them from a command's own. */
const CLEANUP = Symbol('mka.cleanup');

type Handler = ((signal: NodeJS.Signals) => void) & { [CLEANUP]?: true };

/** Removes `path` (a file or a directory) on exit and on a deadly signal until the returned function is called. */
export function removeOnExit(path: string): () => void {
  const remove = () => rmSync(path, { recursive: true, force: true });
  const onSignal: Handler = (signal) => {
    const others = process.listeners(signal).some((l) => !(l as Handler)[CLEANUP]);
    if (others) return; // the command stops itself and cleans up on its way out
    remove();
    dispose();
    if (!process.listeners(signal).length) process.kill(process.pid, signal); // the default action: end by the signal
  };
  onSignal[CLEANUP] = true;
  const dispose = () => {
    process.removeListener('exit', remove);
    for (const s of SIGNALS) process.removeListener(s, onSignal);
  };
  process.on('exit', remove);
  for (const s of SIGNALS) process.on(s, onSignal);
  return dispose;
}

/** Runs `work` with `path` removed on exit and deadly signals meanwhile (removeOnExit). */
export async function withRemovalOnExit<T>(path: string, work: () => Promise<T>): Promise<T> {
  const dispose = removeOnExit(path);
  try {
    return await work();
  } finally {
    dispose();
  }
}
