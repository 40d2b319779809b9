/**
 * Temporary paths a running command must not leave behind when it stops early. `removeOnExit(path)`
 * removes `path` when the process exits (process.exit included) or is ended by SIGINT, SIGTERM or
 * SIGHUP, until the returned function is called (the path was renamed into place or removed).
 *
 * The paths pending removal are one set held on `process` itself, with one listener per event for
 * all of them, installed while the set is not empty: any number of writes may be under way at once
 * without Node warning of a listener leak.
 *
 * A signal is handled only while no other handler is installed: then the paths are removed and the
 * signal raised again, so the process ends as the signal's default would (exit status 128+n). When a
 * command handles the signal itself (eval's and sweep's Ctrl-C finishes the current step and saves
 * it), the handler leaves the paths to that command, whose error path removes them. A kill -9 cannot
 * be caught: what it leaves is recognised by its pid (src/io/output-dir.ts).
 */
import { rmSync } from 'node:fs';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** The key under which `process` holds the pending paths and their listeners (one per process, even across module copies). */
const PENDING = Symbol.for('mka.cleanup.pending');

interface Pending {
  paths: Map<symbol, string>;
  onExit: () => void;
  onSignal: (signal: NodeJS.Signals) => void;
}

type Holder = NodeJS.Process & { [PENDING]?: Pending };

/** Removes every pending path; a path already gone is no error. */
function removeAll(p: Pending): void {
  for (const path of p.paths.values()) rmSync(path, { recursive: true, force: true });
  p.paths.clear();
}

function install(): Pending {
  const p: Pending = {
    paths: new Map(),
    onExit: () => removeAll(p),
    onSignal: (signal) => {
      if (process.listeners(signal).some((l) => l !== p.onSignal)) return; // the command stops itself and cleans up on its way out
      removeAll(p);
      uninstall(p);
      if (!process.listeners(signal).length) process.kill(process.pid, signal); // the default action: end by the signal
    },
  };
  process.on('exit', p.onExit);
  for (const s of SIGNALS) process.on(s, p.onSignal);
  (process as Holder)[PENDING] = p;
  return p;
}

function uninstall(p: Pending): void {
  process.removeListener('exit', p.onExit);
  for (const s of SIGNALS) process.removeListener(s, p.onSignal);
  if ((process as Holder)[PENDING] === p) delete (process as Holder)[PENDING];
}

/** Removes `path` (a file or a directory) on exit and on a deadly signal until the returned function is called. */
export function removeOnExit(path: string): () => void {
  const p = (process as Holder)[PENDING] ?? install();
  const key = Symbol(path);
  p.paths.set(key, path);
  return () => {
    if (!p.paths.delete(key) || p.paths.size) return;
    uninstall(p);
  };
}
