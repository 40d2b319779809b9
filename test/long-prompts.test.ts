/**
 * A prompt of a million characters (one line of an MMLU CSV or of a calibration file) is tokenized only as
 * far as the model reads it: the last max_position_embeddings tokens of a cut MMLU question, the first of a
 * calibration prompt. Tokenizing the whole line took minutes (the BPE runs over it as one word); the
 * pieces give the whole text's tokens, checked against the full tokenization of a shorter text. These
 * tests tokenize a megabyte only through the bounded path, so they finish in seconds by construction (the
 * timeouts only stop a whole-text tokenization from running for minutes).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { encodeHead, encodeTail } from '../src/tokenizer/bounded.ts';
import { planSubject } from '../src/eval/mmlu/question-plan.ts';
import { readMmluFile, type MmluData } from '../src/eval/mmlu/data.ts';
import { calibrationPrompts } from '../src/pipeline/analyse.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('long-prompts');
after(() => rmSync(root, { recursive: true, force: true }));

/** Text of `chars` characters: words, digits and punctuation from a fixed generator. */
function prose(chars: number, seed = 1): string {
  const words = ['the', 'energy', 'of', 'a', 'cell', 'is', '42', 'water,', 'which', 'Answer:', 'isn\'t', 'μ-meson', 'Paris.'];
  let s = seed, out = '';
  while (out.length < chars) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out += words[s % words.length] + (s % 7 === 0 ? '  ' : ' ');
  }
  return out.slice(0, chars);
}

test('encodeHead and encodeTail give the whole text\'s first and last tokens', async () => {
  const tok = await loadTokenizer('models/demo');
  for (const seed of [1, 2, 3]) {
    const text = prose(40_000, seed) + 'x'.repeat(3000) + prose(5000, seed + 10);
    const whole = tok.encode(text);
    for (const n of [1, 100, 700]) {
      assert.deepEqual(encodeHead(tok, text, n), whole.slice(0, n), `head ${n}, seed ${seed}`);
      assert.deepEqual(encodeTail(tok, text, n), whole.slice(-n), `tail ${n}, seed ${seed}`);
    }
    assert.deepEqual(encodeHead(tok, text, whole.length + 5), whole);
    assert.deepEqual(encodeTail(tok, 'short text', 50), tok.encode('short text'));
  }
});

test('an MMLU question of a megabyte is cut to its last tokens without tokenizing the megabyte', { timeout: 120_000 }, async () => {
  const tok = await loadTokenizer('models/demo');
  const dir = join(root, 'mmlu');
  const big = prose(1_000_000);
  writeFileSync(join(root, 'dev.csv'), Array.from({ length: 5 }, (_, i) => `"Q${i}?",a,b,c,d,A\n`).join(''));
  writeFileSync(join(root, 'test.csv'), `"${big}",a,b,c,d,B\n"short?",a,b,c,d,C\n`);
  const data: MmluData = {
    dir, subjects: ['astro'], val: new Map(),
    dev: new Map([['astro', readMmluFile(join(root, 'dev.csv'), 'astro', 'dev')]]),
    test: new Map([['astro', readMmluFile(join(root, 'test.csv'), 'astro', 'test')]]),
  };
  const plan = planSubject(tok, data, 'astro', { ntrain: 5, maxTokens: 1024 });
  const [cut, short] = [...plan.groups.flatMap((g) => g.members), ...plan.alone].sort((a, b) => a.question.index - b.question.index);
  assert.equal(cut.truncated, true);
  assert.equal(cut.ids.length, 1024);
  assert.equal(cut.nllTokens, 1023);
  // the prompt's end: the choices and "Answer:", as the whole prompt's tokenization ends
  const ending = tok.encode(cut.prompt.slice(-3000), { addBos: false });
  assert.deepEqual(cut.ids.slice(-200), ending.slice(-200));
  assert.equal(short.truncated, false);
  assert.deepEqual(short.ids, tok.encode(short.prompt));
});

test('a calibration line of a megabyte is tokenized one token past the model\'s positions', { timeout: 120_000 }, async () => {
  const tok = await loadTokenizer('models/demo');
  const file = join(root, 'calib.txt');
  const big = prose(1_000_000, 5);
  writeFileSync(file, `a short prompt\n${big}\nanother short prompt\n`);
  const { ids } = calibrationPrompts(tok, { calibrationFile: file }, 1024);
  assert.deepEqual(ids[0], tok.encode('a short prompt'));
  assert.equal(ids[1].length, 1025); // longer than the model reads: its consumers cut it and say so
  assert.deepEqual(ids[1].slice(0, 500), tok.encode(big.slice(0, 20_000)).slice(0, 500));
  assert.deepEqual(ids[2], tok.encode('another short prompt'));
});
