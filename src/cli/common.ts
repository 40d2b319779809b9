/**
 * What every command shares: the global options (output format, config file), the compute options of
 * the commands that run a model (backend, threads), and how results and errors reach the user.
 */
import type { Argv } from 'yargs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BACKENDS, COMPUTE_CHOICES, type BackendChoice, type ComputeChoice } from '../runtime/backend-choice.ts';
import type { BackendInfo } from '../runtime/backend.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { claimOutputDir, claimOutputFile, type OutputFileKind, type OutputKind } from '../io/output-dir.ts';

export interface GlobalArgs {
  json: boolean;
  quiet: boolean;
}

/** The parsed arguments of a command whose builder is `B`: what its handler receives, inferred from the options it declares. */
export type ArgsOf<B> = B extends (y: Argv<GlobalArgs>) => Argv<infer T> ? T : never;

/** Adds the options every command takes. */
export function globalOptions<T>(y: Argv<T>) {
  return y
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout', group: 'Global:' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress or log lines', group: 'Global:' })
    .option('config', { type: 'string', describe: 'JSON or YAML file with option values', group: 'Global:' })
    .option('allow-nonfinite', { type: 'boolean', describe: 'read weights holding NaN or Infinity instead of refusing the checkpoint (sets MKA_ALLOW_NONFINITE=1)', group: 'Global:' })
    .middleware((a) => {
      // the checkpoint reader reads the setting from the environment, which job processes inherit
      if (a['allow-nonfinite']) process.env.MKA_ALLOW_NONFINITE = '1';
    });
}

/** Prints a log line on stderr unless --quiet. */
export function logger(args: { quiet?: boolean }): (msg: string) => void {
  return (msg) => {
    if (!args.quiet) process.stderr.write(`${msg}\n`);
  };
}

/**
 * Adds --backend, --threads and --compute. Only the commands that run a model with tfjs take them; the others
 * (info, convert-llama2c, export, serve, queue) refuse them as unknown, on the command line and in a --config file.
 */
export function computeOptions<T>(y: Argv<T>) {
  return y
    .option('backend', { choices: BACKENDS, default: 'auto' as BackendChoice, describe: 'tfjs backend: auto takes tensorflow, else native (cpu tensors + native kernels), else wasm, else cpu', group: 'Compute:' })
    .option('threads', { type: 'number', describe: 'threads for the native matrix products (default: all cores)', group: 'Compute:' })
    .option('compute', {
      choices: COMPUTE_CHOICES, default: 'auto' as ComputeChoice, group: 'Compute:',
      describe: 'dtype of the matrix products: bfloat16 rounds their inputs to bf16 and accumulates in float32 (norms, softmax, RoPE stay float32); auto: bfloat16 for BF16 models on CPUs with bf16 products (avx512_bf16, AMX), else float32',
    });
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

/** The --force option of commands that write an output directory. */
export function forceOption<T>(y: Argv<T>, describe = 'write --out even if it is a non-empty directory mka did not write (it may be replaced)') {
  return y.option('force', { type: 'boolean', default: false, describe });
}

/** --force of commands that write an output file. */
export const FORCE_FILE = 'replace --out even if it is a file mka did not write (never an input)';

/**
 * Options naming paths a command reads. The output guard refuses an output that is, lies inside or
 * contains any of them; a new option that names an input belongs here (`--text` is a path only for
 * `eval ppl` and `sweep`, which pass it themselves).
 */
const INPUT_OPTIONS = ['model', 'reference-model', 'data', 'calibration', 'activations', 'checkpoint', 'tokenizer', 'plan', 'config'];

/** The input paths among a command's parsed arguments, and `extra` ones. */
export function inputsOf(a: object, ...extra: (string | undefined)[]): string[] {
  const args = a as Record<string, unknown>;
  return [...INPUT_OPTIONS.map((k) => args[k]), ...extra].filter((v): v is string => typeof v === 'string' && v !== '');
}

/**
 * Before any work: locks the output directory `out` of `command` and checks it may be written (absent,
 * empty or an earlier mka output of `kind`, or --force; never an input named in `a`, nor `extraInputs`).
 * Returns the lock's release.
 */
export function claimOutput(out: string, command: string, kind: OutputKind, a: { force?: boolean }, ...extraInputs: (string | undefined)[]): () => void {
  return claimOutputDir(out, command, { kind, inputs: inputsOf(a, ...extraInputs), force: a.force });
}

/**
 * Before any work: checks output file `path` (of option `option`) may be written: absent, empty, an
 * earlier mka file of `kind`, or --force; never an input named in `a`, a directory or a special file.
 */
export function claimFile(path: string | undefined, kind: OutputFileKind, a: { force?: boolean }, option = '--out'): void {
  if (path !== undefined) claimOutputFile(path, kind, { inputs: inputsOf(a), force: a.force, option });
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
