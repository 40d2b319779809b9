/**
 * Time of the similarity stage (Gram matrices, diffusion embedding, NPIB) on random activations:
 *   npm run bench -- similarity [--sizes 57,228,1024 --hidden 4096 --layers 8 --seed 1 --no-python]
 * and, when python3 has numpy, scipy and sklearn, the same stage in ../shared/reference/similarity_reference.py
 * ($MKA_SHARED, or --reference PATH) on the same activations.
 */
import { tf } from '../../src/runtime/tf.ts';
import yargs from 'yargs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { initBackend, BACKENDS, type BackendChoice } from '../../src/runtime/backend.ts';
import { accumulateGram, similarityFromGram } from '../../src/compress/similarity/index.ts';

export interface BenchRow {
  n: number;
  gramSeconds: number;
  embedSeconds: number;
  npibSeconds: number;
  /** gram + embed + npib */
  totalSeconds: number;
  solver: string;
  /** Reference time (same stage, Gram included) or why it was not measured. */
  reference: number | string;
}

/**
 * Random activations of `layers` synthetic layers, n × hidden float32 each, drifting like a residual
 * stream: X_{l+1} = X_l + a·tanh(X_l U V / √r) with a rank-r mixing (r = 64), a = 1.2 every third layer.
 */
export function syntheticActivations(n: number, hidden: number, layers: number, seed: number): Float32Array[] {
  const r = 64;
  let x = tf.randomNormal([n, hidden], 0, 1, 'float32', seed) as tf.Tensor2D;
  const out: Float32Array[] = [Float32Array.from(x.dataSync())];
  for (let l = 1; l < layers; l++) {
    const next = tf.tidy(() => {
      const u = tf.randomNormal([hidden, r], 0, 1 / Math.sqrt(hidden), 'float32', seed + 2 * l);
      const v = tf.randomNormal([r, hidden], 0, 1, 'float32', seed + 2 * l + 1);
      const update = tf.tanh(tf.div(tf.matMul(tf.matMul(x, u), v), Math.sqrt(r))); // [n, hidden]
      return tf.add(x, tf.mul(update, l % 3 ? 0.3 : 1.2)) as tf.Tensor2D;
    });
    x.dispose();
    x = next;
    out.push(Float32Array.from(x.dataSync()));
  }
  x.dispose();
  return out;
}

/** Which of numpy, scipy, sklearn python3 lacks (null when python3 itself is missing). */
export function missingPythonModules(python = 'python3'): string[] | null {
  const r = spawnSync(python, ['-c',
    'import importlib.util as u; print(",".join(m for m in ["numpy", "scipy", "sklearn"] if u.find_spec(m) is None))'],
  { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return r.stdout.trim() ? r.stdout.trim().split(',') : [];
}

const REFERENCE_SNIPPET = `
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import similarity_reference as R
L, n, h = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
X = np.fromfile(sys.argv[2], dtype=np.float32).reshape(L, n, h).astype(np.float64)
t0 = time.perf_counter()
emb = [R.diffusion_embedding(x)[0] for x in X]
E = [R.rank_normalize(e) for e in emb]
S, H = R.npib_matrix(E)
print(json.dumps({"seconds": time.perf_counter() - t0}))
`;

/** Times the reference script's stage on the same activations; returns seconds or the reason it did not run. */
function timeReference(referencePy: string, acts: Float32Array[], n: number, hidden: number): number | string {
  const dir = mkdtempSync(join(tmpdir(), 'mka-sim-bench-'));
  try {
    const file = join(dir, 'activations.f32');
    const all = new Float32Array(acts.length * n * hidden);
    acts.forEach((a, l) => all.set(a, l * n * hidden));
    writeFileSync(file, all);
    const r = spawnSync('python3', ['-c', REFERENCE_SNIPPET, dirname(referencePy), file, String(acts.length), String(n), String(hidden)],
      { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) return `failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`;
    return JSON.parse(r.stdout.trim().split('\n').pop()!).seconds;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the benchmark for each n; `reference` is the path of similarity_reference.py or null to skip it. */
export function runSimilarityBench(opts: { sizes: number[]; hidden: number; layers: number; seed: number; reference: string | null },
  log: (line: string) => void = console.log): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const n of opts.sizes) {
    const acts = syntheticActivations(n, opts.hidden, opts.layers, opts.seed);
    const t0 = performance.now();
    const grams = acts.map((a) => {
      const G = new Float64Array(n * n);
      const x = tf.tensor2d(a, [n, opts.hidden]);
      accumulateGram(G, x);
      x.dispose();
      return G;
    });
    const t1 = performance.now();
    let tEmbed = t1;
    const result = similarityFromGram(grams, n, {}, (done) => { if (done === opts.layers) tEmbed = performance.now(); });
    const t2 = performance.now();
    const reference = opts.reference ? timeReference(opts.reference, acts, n, opts.hidden) : 'skipped';
    const row: BenchRow = {
      n,
      gramSeconds: (t1 - t0) / 1000,
      embedSeconds: (tEmbed - t1) / 1000,
      npibSeconds: (t2 - tEmbed) / 1000,
      totalSeconds: (t2 - t0) / 1000,
      solver: result.solver[result.solver.length - 1],
      reference,
    };
    rows.push(row);
    const ref = typeof reference === 'number' ? `${reference.toFixed(2)} s` : reference;
    log(`${String(n).padStart(6)}  ${row.gramSeconds.toFixed(2).padStart(7)}  ${row.embedSeconds.toFixed(2).padStart(7)}  `
      + `${row.npibSeconds.toFixed(2).padStart(7)}  ${row.totalSeconds.toFixed(2).padStart(7)}  ${ref.padStart(10)}  ${row.solver}`);
  }
  return rows;
}

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('sizes', { type: 'string', default: '57,228,1024', describe: 'sample counts n, comma-separated' })
    .option('hidden', { type: 'number', default: 4096 })
    .option('layers', { type: 'number', default: 8 })
    .option('seed', { type: 'number', default: 1 })
    .option('reference', { type: 'string', describe: 'similarity_reference.py (default $MKA_SHARED/reference/...)' })
    .option('python', { type: 'boolean', default: true, describe: 'time the Python reference (--no-python: skip)' })
    .option('backend', { choices: BACKENDS, default: 'auto' as BackendChoice })
    .parseSync();
  const info = await initBackend(a.backend);
  const sizes = a.sizes.split(',').map((s) => Number(s.trim()));
  let reference: string | null = null;
  let note = '';
  const refPath = a.reference ?? (process.env.MKA_SHARED ? join(process.env.MKA_SHARED, 'reference', 'similarity_reference.py') : '');
  if (!a.python) note = 'reference: not asked (--no-python)';
  else if (!refPath || !existsSync(refPath)) note = 'reference: similarity_reference.py not found (set MKA_SHARED or --reference) — skipped';
  else {
    const missing = missingPythonModules();
    if (missing === null) note = 'reference: python3 not found — skipped';
    else if (missing.length) note = `reference: python3 lacks ${missing.join(', ')} (of numpy/scipy/sklearn) — skipped`;
    else reference = resolve(refPath);
  }
  console.log(`similarity stage: ${a.layers} layers, hidden ${a.hidden}, backend ${info.description}`);
  if (note) console.log(note);
  console.log('     n   gram s  embed s   npib s  total s   reference  eigensolver (last layer)');
  runSimilarityBench({ sizes, hidden: a.hidden, layers: a.layers, seed: a.seed, reference });
}
