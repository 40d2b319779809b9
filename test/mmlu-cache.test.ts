/**
 * evaluateMmlu's shared cache (what a sweep's evaluations share): the same records as without it, each
 * subject planned once, the reference model run once per subject, and no use with other data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { createMmluCache, evaluateMmlu } from '../src/eval/mmlu/evaluate.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';

test('a shared MmluCache plans each subject once, runs the reference once and changes no record', async () => {
  await initBackend('auto');
  const tmp = mkdtempSync(join(tmpdir(), 'mka-mmlu-cache-'));
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
