/**
 * evaluateMmlu's shared cache (what a sweep's evaluations share): the same records as without it, each
 * subject planned once, the reference model run once per subject, and no use with other data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel, modelFromTensors } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { createMmluCache, evaluateMmlu } from '../src/eval/mmlu/evaluate.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { scratchDir } from './scratch.ts';

test('a shared MmluCache plans each subject once, runs the reference once and changes no record', async () => {
  await initBackend('auto');
  const tmp = scratchDir('mmlu-cache');
  try {
    await ensureBenchmark(tmp);
    const data = loadMmlu(tmp, {});
    const base = await loadTokenizer('models/demo');
    let encodes = 0;
    const tokenizer = { ...base, encode: (text: string, o?: { addBos?: boolean }) => (encodes++, base.encode(text, o)) };
    const model = loadModel('models/demo');
    const ref = loadModel('models/demo');
    const before = tf.memory().numTensors;
    const opts = { model, referenceModel: ref, tokenizer, data, ntrain: 5, limit: 6, subjects: data.subjects.slice(0, 2) };
    const plain = await evaluateMmlu(opts);
    const cache = createMmluCache(tokenizer, data);
    const first = await evaluateMmlu({ ...opts, cache });
    assert.equal(cache.plans.size, 2);
    const refCalls = ref.stats.forwardCalls;
    const encodesBefore = encodes;
    const second = await evaluateMmlu({ ...opts, cache });
    assert.equal(ref.stats.forwardCalls, refCalls, 'the reference model ran again');
    assert.equal(encodes - encodesBefore, 4, 'only the answer letters were tokenized again, no prompt');
    assert.deepEqual(first.records, plain.records);
    assert.deepEqual(second.records, plain.records);
    // another limit is another plan and other reference scores
    await evaluateMmlu({ ...opts, limit: 3, cache });
    assert.equal(cache.plans.size, 4);
    assert.ok(ref.stats.forwardCalls > refCalls);
    // a cache made for other data is not used
    const other = createMmluCache(tokenizer, loadMmlu(tmp, {}));
    await evaluateMmlu({ ...opts, cache: other });
    assert.equal(other.plans.size, 0);
    assert.equal(tf.memory().numTensors, before);
    disposeModel(model);
    disposeModel(ref);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('with a shared MmluCache, an evaluation of the same weights and settings into another directory copies the first one\'s subjects, byte for byte; other weights compute theirs', async () => {
  await initBackend('auto');
  const tmp = scratchDir('mmlu-twin');
  try {
    const dataDir = join(tmp, 'data');
    await ensureBenchmark(dataDir);
    const data = loadMmlu(dataDir, {});
    const tokenizer = await loadTokenizer('models/demo');
    const ref = loadModel('models/demo');
    // models held in memory, as a sweep's points are: two with the same weights, one with a layer's norm scaled
    const model = modelFromTensors(ref.config, new Map(ref.tensors), null, ref.packed), twin = modelFromTensors(ref.config, new Map(ref.tensors), null, ref.packed);
    const norm = 'model.layers.0.input_layernorm.weight';
    const scaled = tf.mul(ref.tensors.get(norm)!, 1.5);
    const changed = modelFromTensors(ref.config, new Map([...ref.tensors, [norm, scaled]]), null, ref.packed);
    const before = tf.memory().numTensors;
    const cache = createMmluCache(tokenizer, data);
    const opts = { referenceModel: ref, tokenizer, data, ntrain: 5, limit: 4, subjects: data.subjects.slice(0, 3), cache };
    const first = await evaluateMmlu({ ...opts, model, out: join(tmp, 'a') });
    assert.deepEqual([first.reusedSubjects, first.computedQuestions], [[], 12]);
    const calls = twin.stats.forwardCalls;
    const copy = await evaluateMmlu({ ...opts, model: twin, out: join(tmp, 'b') });
    assert.equal(twin.stats.forwardCalls, calls, 'the same weights ran again');
    assert.deepEqual([copy.reusedSubjects, copy.reusedFrom, copy.resumedSubjects, copy.computedQuestions], [opts.subjects, join(tmp, 'a'), [], 0]);
    assert.deepEqual(copy.records, first.records);
    for (const f of ['run-key.json', 'summary.json', 'mmlu.csv', ...readdirSync(join(tmp, 'a', 'subjects')).map((s) => `subjects/${s}`)]) {
      assert.equal(readFileSync(join(tmp, 'b', f), 'utf8'), readFileSync(join(tmp, 'a', f), 'utf8'), f);
    }
    assert.deepEqual(JSON.parse(readFileSync(join(tmp, 'b', 'run.json'), 'utf8')).reusedSubjects, opts.subjects);
    // other weights (one layer's norm scaled) are another run key: computed, nothing copied
    const other = await evaluateMmlu({ ...opts, model: changed, out: join(tmp, 'c') });
    assert.deepEqual([other.reusedSubjects, other.computedQuestions], [[], 12]);
    assert.notDeepEqual(other.records.map((r) => r.nll), first.records.map((r) => r.nll));
    assert.equal(tf.memory().numTensors, before);
    scaled.dispose();
    disposeModel(ref);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
