/**
 * What every command shares: the global options (output format, config file), the options of output
 * directories and files, how a command that runs a model sets up its backend, and how results and
 * errors reach the user.
 */
import type { Argv } from 'yargs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendChoice, ComputeChoice } from '../runtime/backend-choice.ts';
import type { BackendInfo } from '../runtime/backend.ts';
import { type OptionSpec, flag, option } from '../runtime/options.ts';
import { ALLOW_NONFINITE } from '../io/options.ts';
import { declareOptions } from './options.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { claimOutputDir, claimOutputFile, type OutputFileKind, type OutputKind } from '../io/output-dir.ts';

import type { GlobalArgs } from './options.ts';
export type { GlobalArgs };

const G = 'Global:';
export const JSON_OUTPUT = option({ name: 'json', option: 'json', type: 'boolean', default: false, group: G, help: 'machine-readable output on stdout' });
export const QUIET = option({ name: 'quiet', option: 'quiet', type: 'boolean', default: false, group: G, help: 'no progress or log lines' });
export const CONFIG = option({ name: 'config', option: 'config', type: 'string', group: G, help: 'JSON or YAML file with option values' });
/** The options every command takes. */
export const GLOBAL_OPTIONS = [JSON_OUTPUT, QUIET, CONFIG, ALLOW_NONFINITE] as const;

/** Adds the options every command takes. */
export function globalOptions<T>(y: Argv<T>): Argv<T & GlobalArgs> {
  return (declareOptions(y, GLOBAL_OPTIONS) as Argv<T & GlobalArgs>).middleware((a) => {
    // the checkpoint reader reads the setting from the environment, which job processes inherit
    if (a[ALLOW_NONFINITE.option]) process.env.MKA_ALLOW_NONFINITE = '1';
  });
}

export { FORCE_DIR, FORCE_FILE, OUT } from '../io/output-options.ts';

/** Prints a log line on stderr unless --quiet. */
export function logger(args: { quiet?: boolean }): (msg: string) => void {
  return (msg) => {
    if (!args.quiet) process.stderr.write(`${msg}\n`);
  };
}

/**
 * Sets up the backend for a command and says which one it took, and, when --model holds packed
 * weights, which kernels run them (native integer kernels or the JS fallback).
 */
export async function setup(args: { backend: BackendChoice; threads?: number; compute?: ComputeChoice; quiet?: boolean; model?: string }): Promise<BackendInfo> {
  const { initBackend } = await import('../runtime/backend.ts'); // loads tfjs: only for commands that compute
  const info = await initBackend(args.backend, { threads: args.threads, compute: args.compute, log: logger(args) });
  if (args.model && existsSync(join(args.model, 'config.json'))) {
    const { readConfig } = await import('../model/config.ts');
    const { packedPath } = await import('../model/ops.ts');
    if (readConfig(args.model).quantization_config) logger(args)(`packed weights: ${packedPath()}`);
  }
  return info;
}

/**
 * Before any work: locks the output directory `out` of `command` and checks it may be written (absent,
 * empty or an earlier mka output of `kind`, or --force; never one of `inputs`). Returns the lock's release.
 */
export function claimOutput(out: string, command: string, kind: OutputKind, force: boolean | undefined, inputs: readonly string[]): (failed?: boolean) => void {
  return claimOutputDir(out, command, { kind, inputs: [...inputs], force });
}

/**
 * Before any work: checks output file `path` (of option `option`) may be written: absent, empty, an
 * earlier mka file of `kind`, or --force; never one of `inputs`, a directory or a special file.
 */
export function claimFile(path: string | undefined, kind: OutputFileKind, force: boolean | undefined, inputs: readonly string[], option?: OptionSpec): void {
  if (path !== undefined) claimOutputFile(path, kind, { inputs: [...inputs], force, option });
}

/**
 * Runs the work of a resumable command (eval, sweep) with Ctrl-C stopping it after the current `step`
 * (interruptOnSignals): `work` gets the signal. When it stops, `saved(e)` says what is saved (e.g. "3
 * of 8 subjects are saved in OUT"; null for an error that is not the interruption), which is printed
 * with how to resume, and the process exits with 130. `release` frees the output either way, told
 * whether the run failed.
 */
export async function runResumable(ctx: { log(msg: string): void }, step: string, release: (failed?: boolean) => void, saved: (e: unknown) => string | null, work: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const stop = interruptOnSignals(ctx.log, step);
  let failed = false;
  try {
    await work(stop.signal);
  } catch (e) {
    const what = saved(e);
    failed = what === null;
    if (failed) throw e;
    process.stderr.write(`mka: interrupted; ${what}: run the same command again to resume\n`);
    process.exit(130); // the output's release runs at exit
  } finally {
    release(failed); // a failed run's directory with no result yet goes (claimOutputDir)
    stop.dispose();
  }
}

/** Writes JSON to a file atomically, or to stdout. */
export function emitJson(value: unknown, out?: string): void {
  const text = JSON.stringify(value);
  if (out) atomicWriteText(out, text + '\n');
  else process.stdout.write(text + '\n');
}

/**
 * Ctrl-C (or SIGTERM) handling for long, resumable runs: the first signal aborts the returned signal
 * so the run stops after its current `step` (saving what is finished); a second one quits at once.
 * Call `dispose()` when the run ends.
 */
export function interruptOnSignals(log: (msg: string) => void, step: string): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const interrupt = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    log(`\nmka: stopping after the current ${step} (Ctrl-C again to quit at once)`);
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', interrupt);
      process.off('SIGTERM', interrupt);
    },
  };
}
