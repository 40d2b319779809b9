/**
 * The method interface (compress/methods/method.ts): what derives from the methods' declarations (the
 * command-line options, the checks of given values, the defaults, a sweep's key), the inputs the
 * pipeline gives (exactly those declared, none of the others), and plan steps that combine any number
 * of layers with any real weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { METHODS, checkParameters, getMethod, methodOptionSpecs, needsOf, nonDefaultParameters, parametersOf, plansFromSummary } from '../src/compress/methods/registry.ts';
import { combineStep, identityPlan, mergeStep, planSource } from '../src/compress/merge-plan.ts';
import { methodContext } from '../src/pipeline/plan-targets.ts';
import { sweepKey } from '../src/sweep/context.ts';
import type { SweepSettings } from '../src/sweep/sweep.ts';
import { UserError } from '../src/runtime/errors.ts';
import { parseConfig } from '../src/model/config.ts';
import { assertUserError, runAllInProcess } from './cli-run.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { scratchDir } from './scratch.ts';

const cfg = parseConfig({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 16, hidden_size: 8, intermediate_size: 12,
  num_hidden_layers: 6, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 16,
});

/** Asserts a one-line UserError holding every needle. */
function refused(f: () => unknown, ...needles: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof UserError, String(e));
    assert.ok(!e.message.includes('\n'), e.message);
    for (const n of needles) assert.ok(e.message.includes(n), `${JSON.stringify(n)} not in: ${e.message}`);
    return true;
  });
}

test('every parameter is declared once: options, checks and defaults derive from the declarations', () => {
  const specs = methodOptionSpecs();
  const options = specs.map((s) => s.option);
  assert.equal(new Set(options).size, options.length, 'no two parameters share an option');
  const mka = specs.filter((s) => s.method === 'mka').map((s) => [s.name, s.option, s.default]);
  assert.deepEqual(mka, [['strategy', 'strategy', 'last-pair'], ['blendNorms', 'blend-norms', false], ['iterative', 'iterative', false]]);
  for (const s of specs) {
    assert.ok(s.help.length > 10, `${s.option} has help`);
    assert.equal(checkParameters(getMethod(s.method), { [s.name]: s.default }), undefined, `${s.option}'s default passes its own check`);
  }
  const m = getMethod('mka');
  assert.deepEqual(parametersOf(m, { mka: { iterative: true } }), { strategy: 'last-pair', blendNorms: false, iterative: true });
  refused(() => parametersOf(m, { mka: { iterative: 'yes' } }), '--iterative yes', 'true or false');
  refused(() => parametersOf(m, { mka: { strategy: 'first-pair' } }), '--strategy first-pair', 'last-pair, adjacent');
  refused(() => parametersOf(m, { mka: { depth: 3 } }), 'mka has no parameter depth', '--strategy');
  refused(() => parametersOf(getMethod('reverse'), { reverse: { x: 1 } }), 'reverse has no parameter x', 'none');
  assert.deepEqual(nonDefaultParameters({ mka: { strategy: 'last-pair', iterative: true } }), { mka: { iterative: true } });
});

test('needs: what a method reads with its parameters decides whether a stored analysis can plan it', () => {
  const m = getMethod('mka');
  assert.deepEqual(needsOf(m), ['similarity']);
  assert.deepEqual(needsOf(m, { mka: { iterative: true } }), ['similarity', 'recalibrate']);
  assert.deepEqual(needsOf(m, { mka: { strategy: 'adjacent' } }), ['similarity', 'recalibrate']);
  assert.equal(plansFromSummary(m), true);
  assert.equal(plansFromSummary(m, { mka: { iterative: true } }), false);
  assert.equal(plansFromSummary(getMethod('angular')), false, 'angular reads every prompt\'s states');
  for (const method of METHODS) for (const k of needsOf(method)) assert.ok(method.inputs.includes(k), `${method.name} needs only what it declares`);
});

test('a method\'s context holds exactly its declared inputs, each computed on first read', async () => {
  let computed = 0;
  const sources = {
    blockInfluence: () => {
      computed++;
      return [0.5, 0.1, 0.3, 0.2, 0.4, 0.6];
    },
    similarity: () => {
      throw new Error('not asked for');
    },
  };
  const ctx = methodContext(getMethod('shortgpt'), cfg, sources, {});
  assert.deepEqual(Object.keys(ctx.inputs), ['blockInfluence']);
  assert.equal(computed, 0, 'nothing computed before a read');
  const plan = await getMethod('shortgpt').plan(ctx, 2, {});
  assert.equal(computed, 1);
  assert.deepEqual(plan.layers.map((l) => l.sources[0].layer), [0, 2, 4, 5]);
  // an input declared but not given is an internal error naming it
  const mctx = methodContext(getMethod('mka'), cfg, {}, {});
  assert.throws(() => mctx.inputs.similarity, /mka: its input "similarity" is not available here/);
});

test('a sweep\'s key: unchanged for default parameters, extended by non-default ones', () => {
  const base: SweepSettings = { model: 'm', data: 'd', methods: ['mka'], remove: [0, 2], ntrain: 5, out: 'o' };
  const key = sweepKey(base);
  assert.equal(key, sweepKey({ ...base, params: { mka: { strategy: 'last-pair', blendNorms: false, iterative: false } } }));
  assert.ok(!key.includes('methodParameters'));
  const it = JSON.parse(sweepKey({ ...base, params: { mka: { iterative: true } } }));
  assert.deepEqual(it.methodParameters, { mka: { iterative: true } });
  assert.equal(JSON.parse(sweepKey({ ...base, params: { mka: { strategy: 'adjacent' } } })).strategy, 'adjacent', 'the old field, as before');
});

test('combineStep: any number of layers with any real weights summing to 1 (LaCo\'s RDSC), composed with earlier steps', () => {
  // θ_1 + (θ_2 − θ_1) + (θ_3 − θ_1) = −θ_1 + θ_2 + θ_3
  let plan = combineStep(identityPlan('laco', 6), [1, 2, 3], [-1, 1, 1], { score: 0.9 });
  assert.deepEqual(plan.layers.map((l) => l.sources), [
    [{ layer: 0, weight: 1 }], [{ layer: 1, weight: -1 }, { layer: 2, weight: 1 }, { layer: 3, weight: 1 }], [{ layer: 4, weight: 1 }], [{ layer: 5, weight: 1 }],
  ]);
  assert.equal(plan.layers[1].normsFrom, 1);
  assert.deepEqual(plan.steps[0], { action: 'merge', layers: [1, 2, 3], originalLayers: [1, 2, 3], weights: [-1, 1, 1], score: 0.9 });
  // then 0 and the merged layer: 0.5·θ0 + 0.5·(−θ1 + θ2 + θ3), via mergeStep
  plan = mergeStep(plan, 0, 1, 0.5);
  assert.deepEqual(plan.layers[0].sources, [{ layer: 0, weight: 0.5 }, { layer: 1, weight: -0.5 }, { layer: 2, weight: 0.5 }, { layer: 3, weight: 0.5 }]);
  // weights giving a layer exactly 0 leave it out: θ1 + (θ2 − θ1) = θ2
  assert.deepEqual(combineStep(identityPlan('laco', 4), [1, 2], [0, 1]).layers[1].sources, [{ layer: 2, weight: 1 }]);
  assert.throws(() => combineStep(identityPlan('x', 4), [2, 1], [0.5, 0.5]), /ascending/);
  assert.throws(() => combineStep(identityPlan('x', 4), [1, 2], [0.5, 0.6]), /sum to 1/);
  // the tensors: exactly the weighted sum
  const read = (name: string) => Float32Array.from({ length: 8 }, (_, e) => Number(/layers\.(\d+)\./.exec(name)?.[1] ?? 0) * 10 + e);
  const src = planSource({ config: cfg, read }, combineStep(identityPlan('laco', 6), [1, 2, 3], [-1, 1, 1]));
  assert.deepEqual([...src.read('model.layers.1.input_layernorm.weight')], [...read('model.layers.1.input_layernorm.weight')], 'norms from the first layer');
  const q = src.read('model.layers.1.self_attn.q_proj.weight');
  assert.deepEqual([...q.slice(0, 8)], Array.from({ length: 8 }, (_, e) => -(10 + e) + (20 + e) + (30 + e)));
});

test('the command line takes every method parameter from the declarations and refuses bad values in one line', async () => {
  const root = scratchDir('iface');
  const out = (n: string) => join(root, n);
  const results = await runAllInProcess([
    ['compress', '--model', 'models/demo', '--method', 'mka', '--remove', '1', '--strategy', 'first', '--calibration', 'README.md', '--out', out('a')],
    ['compress', '--model', 'models/demo', '--plan', 'p.json', '--iterative', '--out', out('b')],
    ['compress', '--help'],
    // an option of a method the run does not use would be ignored: refused, naming it and the run's methods
    ['compress', '--model', 'models/demo', '--method', 'sleb', '--remove', '1', '--laco-threshold', '0.5', '--calibration', 'README.md', '--out', out('c')],
    ['sweep', '--model', 'models/demo', '--data', 'data/demo-mmlu', '--methods', 'mka,sleb', '--sleb-keep-first', '2', '--iterative', '--magnitude-keep-last', '0', '--out', out('d')],
  ]);
  assertUserError(results[0], 'strategy', 'last-pair');
  assertUserError(results[1], '--plan', '--iterative');
  assert.equal(results[2].status, 0);
  for (const s of methodOptionSpecs()) assert.ok(results[2].stdout.includes(`--${s.option}`), `--help lists --${s.option}`);
  assertUserError(results[3], '--laco-threshold: an option of laco', '(--method sleb)');
  assertUserError(results[4], '--magnitude-keep-last: an option of magnitude', '(--methods mka,sleb)');
  assert.ok(!existsSync(out('c')) && !existsSync(out('d')), 'nothing written');
  assert.ok(!readFileSync('README.md', 'utf8').includes('undefined'));
});

test('every new method from the command line on the demo model: 6 layers left, README.md and mergekit.yaml beside merge.json', async () => {
  const root = scratchDir('check');
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const runs: [string, string[]][] = [
    ['laco', ['--method', 'laco', '--per-subject', '4']],
    ['sleb', ['--method', 'sleb', '--per-subject', '4']],
    ['taylor', ['--method', 'taylor', '--per-subject', '4']],
    ['magnitude', ['--method', 'magnitude']],
    ['mka-iterative', ['--method', 'mka', '--iterative']],
    ['mka-fit', ['--method', 'mka', '--fit-lambda']],
  ];
  const results = await runAllInProcess(runs.map(([name, args]) => ['compress', '--model', 'models/demo', '--remove', '2', '--data', data, ...args, '--out', join(root, name), '--quiet']));
  results.forEach((r, k) => {
    const [name] = runs[k];
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    const dir = join(root, name);
    assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).num_hidden_layers, 6, name);
    const merge = JSON.parse(readFileSync(join(dir, 'merge.json'), 'utf8'));
    assert.equal(merge.method, runs[k][1][1]);
    assert.match(readFileSync(join(dir, 'README.md'), 'utf8'), /^---\nbase_model:/, name);
    assert.ok(readFileSync(join(dir, 'mergekit.yaml'), 'utf8').startsWith('# models/demo: 2 of 8 decoder layers removed'), name);
  });
  const merge = (name: string) => JSON.parse(readFileSync(join(root, name, 'merge.json'), 'utf8'));
  assert.equal(merge('mka-iterative').iterative, true);
  assert.deepEqual(merge('mka-iterative').parameters, { strategy: 'last-pair', blendNorms: false, iterative: true });
  assert.ok(merge('mka-fit').steps.every((s: { fit?: unknown }) => s.fit));
  assert.equal(merge('taylor').gradients_backend, 'wasm');
  assert.equal(merge('sleb').calibration.forward_passes, undefined, 'sleb makes no calibration pass');
  assert.equal(merge('magnitude').calibration, undefined, 'magnitude reads the weights only');
});
