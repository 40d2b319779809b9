/**
 * What every command shares: the global options (backend, threads, output format) and how results
 * and errors reach the user.
 */
import type { Argv } from 'yargs';
import { BACKENDS, type BackendChoice, type BackendInfo, initBackend } from '../runtime/backend.ts';
import { atomicWriteText } from '../io/atomic.ts';

export interface GlobalArgs {
  backend: BackendChoice;
  threads?: number;
  json: boolean;
  quiet: boolean;
}

/** Adds the options every command takes. */
export function globalOptions<T>(y: Argv<T>) {
  return y
    .option('backend', { choices: BACKENDS, default: 'auto' as BackendChoice, describe: 'tfjs backend: auto takes tensorflow, else native (cpu tensors + native kernels), else wasm, else cpu', group: 'Global:' })
    .option('threads', { type: 'number', describe: 'threads for the native matrix products (default: all cores)', group: 'Global:' })
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout', group: 'Global:' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress or log lines', group: 'Global:' })
    .option('config', { type: 'string', describe: 'JSON or YAML file with option values', group: 'Global:' });
}

/** Prints a log line on stderr unless --quiet. */
export function logger(args: { quiet?: boolean }): (msg: string) => void {
  return (msg) => {
    if (!args.quiet) process.stderr.write(`${msg}\n`);
  };
}

/** Sets up the backend for a command and says which one it took. */
export async function setup(args: GlobalArgs): Promise<BackendInfo> {
  return initBackend(args.backend, { threads: args.threads, log: logger(args) });
}

/** Writes JSON to a file atomically, or to stdout. */
export function emitJson(value: unknown, out?: string): void {
  const text = JSON.stringify(value);
  if (out) atomicWriteText(out, text + '\n');
  else process.stdout.write(text + '\n');
}
