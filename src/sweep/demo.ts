/**
 * `npm start` / `mka demo`: the whole pipeline on the bundled demo model and benchmark, offline, in a
 * few minutes on 2 cores: a sweep of MKA and the baselines, its report, and a tfjs export of the
 * chosen MKA model.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSweep, type SweepPoint } from './sweep.ts';
import { exportTfjs } from '../export/graph-model.ts';
import { UserError } from '../runtime/errors.ts';
import { ensureBenchmark } from '../eval/mmlu/demo-benchmark.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** The bundled demo model, read from the installed package (never written). */
export const DEMO_MODEL = join(ROOT, 'models', 'demo');
/** Where the demo generates its benchmark: under the working directory, beside its results (the package may be read-only). */
export const DEMO_DATA = join('data', 'demo-mmlu');

export interface DemoOptions {
  out: string;
  methods?: string[];
  remove?: number[];
  limit?: number;
  quiet?: boolean;
  log?: (msg: string) => void;
  runInfo?: Record<string, unknown>;
}

/** Writes the demo benchmark if needed, runs the demo sweep and exports the largest MKA point for tfjs. */
export async function runDemo(opts: DemoOptions): Promise<{ points: SweepPoint[]; exported: string }> {
  if (!existsSync(join(DEMO_MODEL, 'config.json'))) throw new UserError(`${DEMO_MODEL}: the demo model is missing (train it with \`npm run train-demo\`)`);
  await ensureBenchmark(DEMO_DATA);
  const remove = opts.remove ?? [0, 2, 3, 4];
  const points = await runSweep({
    model: DEMO_MODEL, data: DEMO_DATA, methods: opts.methods ?? ['mka', 'reverse', 'shortgpt', 'angular'], remove,
    ntrain: 5, limit: opts.limit, perSubject: 20, out: opts.out, keepModels: true, quiet: opts.quiet, log: opts.log, runInfo: opts.runInfo,
  });
  const k = Math.max(...remove);
  const exported = join(opts.out, `tfjs-mka-${k}`);
  await exportTfjs({ model: join(opts.out, 'models', `mka-${k}`), out: exported });
  opts.log?.(`tfjs GraphModel of mka -${k}: ${exported}/model.json`);
  return { points, exported };
}
