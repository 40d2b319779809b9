/**
 * The paper-scale workflow, measured: every step runs as its own `mka` process on a model directory at
 * a paper shape, and the bench prints each step's wall time and peak RSS (GNU time's maximum resident
 * set size, else /proc/<pid>/status VmHWM polled), then writes results/bench-scale.json.
 *
 *   npm run bench -- scale --work DIR | --model DIR [--model70b DIR] [--layers 4] [--data MMLU_DIR] [--remove K]
 *                          [--calib-subjects N] [--eval-subjects a,b] [--steps similarity,eval,compress,export-hf,export-tfjs,forward70b]
 *                          [--backend B] [--keep] [--clean]
 *
 * Steps: `mka similarity --streaming` on the MMLU calibration prompts (57, one per subject, unless
 * --calib-subjects), `mka eval mmlu --streaming --limit 2` (all subjects unless --eval-subjects),
 * `mka compress --method mka --remove K --streaming --dtype bfloat16`, `mka export hf` and
 * `mka export tfjs --quantize float16` of the model, and `mka forward` of a one-layer 70B-shaped model
 * from BF16. A missing --model is made (Llama-3-8B shape, --layers layers, scripts/make-paper-model.ts),
 * and so is the 70B layer, in --work (no default: the models take up to 16 GB, so the bench writes only
 * where it is told, and says where). The models it makes are kept for the next run (say so), or deleted
 * at the end with --clean. Step outputs are deleted after each step unless --keep (an 8B step writes up
 * to 16 GB). Timings are noisy on a shared machine.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, freemem, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { makePaperModel } from '../make-paper-model.ts';
import { readConfig } from '../../src/model/config.ts';
import { atomicWriteText } from '../../src/io/atomic.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'bin', 'mka.mjs');
const GNU_TIME = '/usr/bin/time';
const STEPS = ['similarity', 'eval', 'compress', 'export-hf', 'export-tfjs', 'forward70b'] as const;
type Step = (typeof STEPS)[number];

export interface StepResult {
  step: Step;
  command: string;
  exitCode: number | null;
  seconds: number;
  /** Peak resident set size in bytes. */
  peakRss: number;
  /** How peakRss was measured. */
  rssSource: 'gnu-time' | 'proc-poll';
  /** The child's log lines that say which backend and kernels ran. */
  backend: string[];
  /** Last lines of stderr when the step failed. */
  error?: string;
}

/** Runs `node bin/mka.mjs ...args` and measures its wall time and peak RSS. */
export async function measure(step: Step, args: string[], log: (s: string) => void): Promise<StepResult> {
  const timeFile = join(ROOT, 'results', `.bench-scale-time-${process.pid}`);
  const useTime = existsSync(GNU_TIME);
  const cmd = useTime ? GNU_TIME : process.execPath;
  const argv = useTime ? ['-v', '-o', timeFile, process.execPath, CLI, ...args] : [CLI, ...args];
  mkdirSync(dirname(timeFile), { recursive: true });
  log(`$ mka ${args.join(' ')}`);
  const t0 = performance.now();
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    process.stderr.write(d); // the step's progress, as it runs
    stderr += d.toString();
    if (stderr.length > 1e6) stderr = stderr.slice(-5e5);
  });
  let polled = 0;
  const poll = setInterval(() => {
    polled = Math.max(polled, vmHwm(child.pid!, useTime));
  }, 250);
  const exitCode: number | null = await new Promise((res) => child.on('close', (code) => res(code)));
  clearInterval(poll);
  const seconds = (performance.now() - t0) / 1000;
  let peakRss = polled, rssSource: StepResult['rssSource'] = 'proc-poll';
  if (useTime && existsSync(timeFile)) {
    const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(readFileSync(timeFile, 'utf8'));
    if (m) {
      peakRss = Number(m[1]) * 1024;
      rssSource = 'gnu-time';
    }
    rmSync(timeFile, { force: true });
  }
  const lines = stderr.split('\n');
  const backend = [...new Set(lines.filter((l) => /^(backend|kernels?|native)\b/i.test(l.trim())).map((l) => l.trim()))];
  const r: StepResult = { step, command: `mka ${args.join(' ')}`, exitCode, seconds, peakRss, rssSource, backend };
  if (exitCode !== 0) r.error = lines.filter((l) => l.trim() && !l.includes('\r')).slice(-3).join(' | ');
  return r;
}

/** VmHWM (bytes) of `pid`, or of its child when `pid` is GNU time. */
function vmHwm(pid: number, viaTime: boolean): number {
  const read = (p: number) => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  };
  if (!viaTime) return read(pid);
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return Math.max(0, ...kids.map(read));
  } catch {
    return 0;
  }
}

const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;

const USAGE = `npm run bench -- scale --work DIR [--data MMLU_DIR] [--layers 4] [--steps ...]
  or: npm run bench -- scale --model PAPER_SHAPE_DIR [--data MMLU_DIR] ...
Times each step of the workflow on a paper-shape model and prints its wall time and peak RSS.`;

/** A mistake in the bench's options: the dispatcher prints the message and the usage, without a stack. */
export class BenchUsage extends Error {
  readonly usage = USAGE;
}

export async function main(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName('npm run bench -- scale')
    .option('model', { type: 'string', describe: 'paper-shape model directory (default: <work>/llama3-8b-<layers>L, made when missing)' })
    .option('model70b', { type: 'string', describe: 'one-layer 70B-shaped model directory (default: <work>/llama70b-1L, made when missing)' })
    .option('layers', { type: 'number', default: 4, describe: 'layers of the Llama-3-8B shape made when --model is missing' })
    .option('work', { type: 'string', describe: 'where the models it makes and the step outputs go (never the repository; required unless --model, then default: beside it)' })
    .option('data', { type: 'string', describe: 'MMLU directory (default $MKA_SHARED/data/mmlu)' })
    .option('remove', { type: 'number', describe: 'layers compress removes (default 8 of 32; a quarter of a smaller model)' })
    .option('calib-subjects', { type: 'number', describe: 'MMLU subjects in the calibration (default all 57)' })
    .option('eval-subjects', { type: 'string', describe: 'comma-separated subjects for eval mmlu (default all)' })
    .option('limit', { type: 'number', default: 2, describe: 'eval mmlu questions per subject' })
    .option('steps', { type: 'string', default: STEPS.join(','), describe: 'steps to run' })
    .option('backend', { type: 'string', describe: 'passed to every mka command' })
    .option('keep', { type: 'boolean', default: false, describe: 'keep step outputs' })
    .option('clean', { type: 'boolean', default: false, describe: 'delete the models this run made, at the end (default: keep them for the next run)' })
    .option('out', { type: 'string', default: join(ROOT, 'results', 'bench-scale.json') })
    .usage(USAGE)
    .strict()
    .parse();
  if (a.work === undefined && a.model === undefined) throw new BenchUsage('give --work DIR (where the paper-shape models are made, up to 16 GB) or --model DIR (an existing one)');
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const steps = a.steps.split(',').map((s) => s.trim()) as Step[];
  const bad = steps.filter((s) => !(STEPS as readonly string[]).includes(s));
  if (bad.length) throw new Error(`--steps: unknown ${bad.join(', ')} (choose from ${STEPS.join(', ')})`);
  const work = resolve(a.work ?? join(dirname(resolve(a.model!)), 'mka-scale-work'));
  if (resolve(work).startsWith(resolve(ROOT))) throw new BenchUsage(`--work ${work}: inside the repository; choose a directory outside it`);
  mkdirSync(work, { recursive: true });
  const data = a.data ?? (process.env.MKA_SHARED ? join(process.env.MKA_SHARED, 'data', 'mmlu') : null);
  if (!data && steps.some((s) => s === 'similarity' || s === 'eval' || s === 'compress')) throw new BenchUsage('give --data MMLU_DIR or set MKA_SHARED (the similarity, eval and compress steps need MMLU)');

  const made: string[] = [];
  const model = resolve(a.model ?? join(work, `llama3-8b-${a.layers}L`));
  if (!existsSync(join(model, 'config.json'))) {
    log(`making ${model} (Llama-3-8B shape, ${a.layers} layers, about ${(0.44 * a.layers + 2.1).toFixed(1)} GB of BF16); ${a.clean ? 'deleted at the end (--clean)' : 'kept for the next run: delete it, or pass --clean'}`);
    await makePaperModel({ shape: 'llama3-8b', layers: a.layers, out: model });
    made.push(model);
  }
  const config = readConfig(model);
  const L = config.num_hidden_layers;
  const remove = a.remove ?? (L >= 32 ? 8 : Math.max(1, Math.floor(L / 4)));
  const common = [...(a.backend ? ['--backend', a.backend] : [])];
  const calib = [...(a['calib-subjects'] ? ['--calib-subjects', String(a['calib-subjects'])] : [])];
  const out = (name: string) => join(work, `out-${name}`);
  const results: StepResult[] = [];
  log(`machine: ${availableParallelism()} cores, ${gb(totalmem())} RAM, ${gb(freemem())} available; model ${model} (${L} layers, hidden ${config.hidden_size}, vocab ${config.vocab_size})`);

  for (const step of steps) {
    let args: string[];
    let output: string;
    if (step === 'similarity') {
      output = out('sim.json');
      args = ['similarity', '--model', model, '--data', data!, '--streaming', ...calib, '--out', output];
    } else if (step === 'eval') {
      output = out('eval');
      args = ['eval', 'mmlu', '--model', model, '--data', data!, '--streaming', '--limit', String(a.limit), '--fresh', '--out', output,
        ...(a['eval-subjects'] ? ['--subjects', a['eval-subjects']] : [])];
    } else if (step === 'compress') {
      output = out('compressed');
      args = ['compress', '--model', model, '--method', 'mka', '--remove', String(remove), '--data', data!, '--streaming', ...calib, '--dtype', 'bfloat16', '--out', output];
    } else if (step === 'export-hf') {
      output = out('hf');
      args = ['export', 'hf', '--model', model, '--out', output];
    } else if (step === 'export-tfjs') {
      output = out('tfjs');
      args = ['export', 'tfjs', '--model', model, '--quantize', 'float16', '--out', output];
    } else {
      const m70 = resolve(a.model70b ?? join(work, 'llama70b-1L'));
      if (!existsSync(join(m70, 'config.json'))) {
        log(`making ${m70} (one 70B-shaped layer, about 6 GB of BF16); ${a.clean ? 'deleted at the end (--clean)' : 'kept for the next run: delete it, or pass --clean'}`);
        await makePaperModel({ shape: 'llama70b-layer', layers: 1, out: m70 });
        made.push(m70);
      }
      output = out('forward70b.json');
      args = ['forward', '--model', m70, '--text', 'The capital of France is', '--out', output];
    }
    const r = await measure(step, [...args, ...(step.startsWith('export') ? [] : common)], log); // export computes nothing with tfjs and takes no --backend
    results.push(r);
    log(`  ${step}: exit ${r.exitCode}, ${r.seconds.toFixed(1)} s, peak RSS ${gb(r.peakRss)}${r.error ? ` (${r.error})` : ''}`);
    if (!a.keep) rmSync(output, { recursive: true, force: true });
  }

  const backend = [...new Set(results.flatMap((r) => r.backend))];
  const rows = results.map((r) => `| ${r.step} | ${r.exitCode} | ${r.seconds.toFixed(1)} | ${gb(r.peakRss)} |`);
  process.stdout.write([
    `model: ${model} (${L} layers${L === 32 ? '' : ', not the full 32'}), remove ${remove}; ${availableParallelism()} cores, ${gb(totalmem())} RAM`,
    ...backend.map((b) => `  ${b}`),
    '| step | exit | seconds | peak RSS |', '|---|---:|---:|---:|', ...rows, '',
  ].join('\n'));
  const report = {
    date: new Date().toISOString(), model, layers: L, remove, cores: availableParallelism(), totalmem: totalmem(),
    backend, steps: results,
  };
  atomicWriteText(resolve(a.out), JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${a.out}`);
  for (const m of made) {
    if (a.clean) rmSync(m, { recursive: true, force: true });
    log(a.clean ? `deleted ${m}` : `kept ${m} (delete it when done, or rerun with --clean)`);
  }
}
