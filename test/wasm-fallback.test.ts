/**
 * The WebAssembly fallback (no native addon: a machine without a C compiler at npm ci) holds the same
 * tolerances as the native kernels. The test files whose numerics run on the native kernels in `npm test`
 * and compare with references at tight tolerances run again here, in one child run of
 * scripts/run-tests.mjs --wasm (MKA_NATIVE_ADDON names a missing addon, so mka and the tests see none).
 * Every test on the fallback: `npm run test:wasm`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEFAULT_ADDON_PATH } from '../src/runtime/native-addon.ts';
import { runCli } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const ROOT = join(import.meta.dirname, '..');
const ON_FALLBACK = !existsSync(process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH) && 'this run has no native addon: every file runs on the WebAssembly fallback already';

/**
 * What runs again, each entry in a child run of its own: the files (and, with `tests`, only their tests
 * whose names begin so) whose model code runs on the native kernels in `npm test` (the backend `auto`,
 * in the test's process or in the mka it starts) and compares with a reference at a tolerance a kernel's
 * rounding can reach. Files that pick `--backend wasm` themselves, or test a backend in a loop, already
 * run their numerics on the fallback.
 */
export const FALLBACK_RUNS: { files: string[]; tests?: string[] }[] = [
  // GPTQ, AWQ, SmoothQuant and RTN: layer goldens at 1e-4..1e-5, objectives vs round to nearest
  // (quantize.test's 1e-4 GPTQ check once failed here only)
  { files: ['test/quantize.test.ts', 'test/quant-layer.test.ts'] },
  // lm-eval 0.4.13's loglikelihoods within 1e-3 and its is_greedy/acc/acc_norm per document
  { files: ['test/lm-eval-tasks.test.ts'], tests: ['mka eval tasks on the parquet files', 'raw loglikelihood requests', 'mmlu_lmeval on real MMLU subjects'] },
];

test('the numerically sensitive files pass on the WebAssembly fallback', { skip: ON_FALLBACK }, async (t) => {
  const { NODE_TEST_CONTEXT: _, ...env } = process.env; // each child is a run of its own, not a part of this one
  for (const run of FALLBACK_RUNS) {
    await t.test(run.files.join(' ') + (run.tests ? `: ${run.tests.join('; ')}` : ''), () => {
      const pattern = run.tests && `^(${run.tests.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`;
      const args = [join(ROOT, 'scripts', 'run-tests.mjs'), '--wasm', ...(pattern ? [`--test-name-pattern=${pattern}`] : []), ...run.files];
      const r = spawnSync(process.execPath, args, { cwd: ROOT, env: { ...env, MKA_TEST_CONCURRENCY: '1' }, encoding: 'utf8', maxBuffer: 64 << 20 });
      const failures = r.stdout.indexOf('✖ failing tests:'); // the spec reporter's summary: each failed test with its error
      assert.equal(r.status, 0, `on the WebAssembly fallback:\n${r.stdout.slice(failures >= 0 ? failures : -4000).slice(0, 8000)}\n${r.stderr.slice(-2000)}`);
      assert.ok(Number(/^ℹ pass (\d+)$/m.exec(r.stdout)?.[1]) > 0, `tests ran:\n${r.stdout.slice(-2000)}`);
      for (const name of run.tests ?? []) assert.ok(r.stdout.includes(`✔ ${name}`) || r.stdout.includes(`﹣ ${name}`), `a test named "${name}..." ran (renamed?):\n${r.stdout.slice(-2000)}`);
    });
  }
});

test('the fallback is said once, naming why and that it is slower', async () => {
  const missing = join(scratchDir('no-addon'), 'mka_native.node');
  const r = await runCli(['forward', '--model', join(ROOT, 'models', 'demo'), '--text', 'Once upon a time'], { env: { ...process.env, MKA_NATIVE_ADDON: missing } });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => /native|WebAssembly|wasm/i.test(l));
  assert.deepEqual(lines, [
    `backend: wasm (native kernels unavailable, so the slower WebAssembly ones run: native addon not built (${missing} missing; needs a C compiler at npm ci, or npm run build:native)); ` +
    'compute auto: float32 (the wasm backend has no bf16 products; BF16 models are widened to float32)',
  ]);
});
