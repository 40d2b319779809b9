/**
 * `--protocol released` reproduces what the paper's released code gets from transformers:
 * - BOS: its tokenizer is `AutoTokenizer.from_pretrained(dir, add_bos_token=False)`, which drops BOS
 *   for Llama-2-style tokenizers (LlamaTokenizerFast obeys the flag) but not for Llama 3's
 *   (PreTrainedTokenizerFast ignores it: transformers#30947), checked against the ids transformers
 *   4.57.6 gives (test/goldens/released-bos/token-ids.json, made by make.py there);
 * - layers: the pipeline calibrates on block inputs (transformers' hidden_states[l]: the embeddings
 *   for l = 0), not block outputs, checked against the hidden states of a forward pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bosUnderAddBosTokenFalse, loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { analyzeIds, calibrationPrompts } from '../src/pipeline/analyse.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { writeReleasedBosTokenizers } from './goldens/released-bos/tokenizers.ts';
import { scratchDir } from './scratch.ts';

interface Golden { cases: { name: string; class: string; texts: { text: string; default_ids: number[]; add_bos_token_false_ids: number[] }[] }[] }
const GOLDEN: Golden = JSON.parse(readFileSync('test/goldens/released-bos/token-ids.json', 'utf8'));
const root = scratchDir('released');
writeReleasedBosTokenizers(join(root, 'tok'));

test('the released code\'s tokenizer call gives transformers\' ids: BOS kept for Llama 3, dropped for Llama-2-style tokenizers', async () => {
  assert.deepEqual(GOLDEN.cases.map((c) => c.name), ['llama3', 'llama2-style', 'demo-pretrained-fast']);
  for (const c of GOLDEN.cases) {
    const tok = await loadTokenizer(join(root, 'tok', c.name));
    for (const t of c.texts) {
      assert.deepEqual(tok.encode(t.text), t.default_ids, `${c.name}: tokenizer(text)`);
      assert.deepEqual(tok.encode(t.text, { addBos: bosUnderAddBosTokenFalse(tok) }), t.add_bos_token_false_ids, `${c.name} (${c.class}): add_bos_token=False`);
    }
  }
  assert.equal(GOLDEN.cases[0].texts[0].add_bos_token_false_ids[0], 128000, 'the golden itself: Llama 3 keeps <|begin_of_text|>');
});

test('--protocol released calibration prompts begin as the released code\'s do, per tokenizer family', async () => {
  const data = join(root, 'data');
  await ensureBenchmark(data);
  for (const [name, bos] of [['llama3', 128000], ['llama2-style', null], ['demo-pretrained-fast', 1]] as const) {
    const tok = await loadTokenizer(join(root, 'tok', name));
    const released = calibrationPrompts(tok, { data, subjects: 2, perSubject: 2, protocol: 'released' });
    const mine = calibrationPrompts(tok, { data, subjects: 2, perSubject: 2 });
    assert.ok(mine.ids.every((p) => p[0] === tok.bos), `${name}: mka puts BOS first`);
    if (bos === null) assert.ok(released.ids.every((p) => p[0] !== tok.bos), `${name}: released drops BOS`);
    else assert.ok(released.ids.every((p) => p[0] === bos), `${name}: released keeps BOS ${bos}`);
  }
});

test('--protocol released calibrates on block inputs (hidden_states[l]), the default on block outputs', async () => {
  await initBackend('wasm');
  const model = loadModel('models/demo');
  try {
    const tok = await loadTokenizer('models/demo');
    const ids = ['The capital of France is', 'Two plus two is four.', 'Question: which is largest?', 'A B C D'].map((s) => tok.encode(s));
    const labels = ids.map((_, i) => `p${i}`);
    const released = analyzeIds(model, ids, labels, { representation: 'last', protocol: 'released', quiet: true });
    const mine = analyzeIds(model, ids, labels, { representation: 'last', quiet: true });
    // each prompt's hidden states, by forward pass: [L+1][T][H], entry l the input of block l
    const states = ids.map((p) => {
      const r = forward(model, [p], { hiddenStates: true });
      const hs = r.hiddenStates!.map((h) => (h.arraySync() as number[][][])[0]);
      r.hiddenStates!.forEach((h) => h.dispose());
      return hs;
    });
    const gramOf = (l: number) => {
      const last = states.map((hs) => hs[l].at(-1)!);
      return last.flatMap((a) => last.map((b) => a.reduce((s, v, k) => s + v * b[k], 0)));
    };
    const close = (got: Float64Array, want: number[]) => want.every((w, i) => Math.abs(got[i] - w) <= 1e-3 * Math.max(1, Math.abs(w)));
    const L = model.config.num_hidden_layers;
    for (let l = 0; l < L; l++) {
      assert.ok(close(released.calibration.grams[l], gramOf(l)), `released layer ${l} is hidden_states[${l}] (block ${l}'s input)`);
      assert.ok(!close(released.calibration.grams[l], gramOf(l + 1)), `released layer ${l} is not block ${l}'s output`);
      if (l < L - 1) assert.ok(close(mine.calibration.grams[l], gramOf(l + 1)), `mka layer ${l} is block ${l}'s output`);
    }
  } finally {
    disposeModel(model);
  }
});
