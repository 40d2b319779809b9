/**
 * A document whose values a task cannot use (a WinoGrande sentence without its blank, an ARC answer key
 * that is no choice label) is refused in one line naming the file, the document and the fix: an
 * evaluated one when the task is loaded, before any model; a few-shot one when it is drawn, naming the
 * few-shot split's file and the document it was drawn for. Documents past --limit are not evaluated,
 * so not refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadTask } from '../src/eval/tasks/load.ts';
import { getTask } from '../src/eval/tasks/registry.ts';
import { evaluateTasks } from '../src/eval/tasks/evaluate.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { UserError } from '../src/runtime/errors.ts';
import { writeLlama3Tiny } from './llama3-tiny.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('task-doc-errors');
const FIX = join(process.cwd(), 'test', 'fixtures', 'tasks');
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());

const oneLine = (start: string, ...needles: string[]) => (e: Error) => e instanceof UserError && !/\n/.test(e.message)
  && e.message.startsWith(start) && needles.every((n) => e.message.includes(n));

test('an evaluated document the task cannot use is refused when the task loads, naming the file and document; past --limit it is not', async () => {
  const file = join(TMP, 'winogrande.jsonl');
  const docs = lines(join(FIX, 'winogrande.jsonl')).map((l) => JSON.parse(l));
  writeFileSync(file, docs.map((d, i) => JSON.stringify(i === 2 ? { ...d, sentence: 'no blank here' } : d)).join('\n'));
  await assert.rejects(loadTask(getTask('winogrande'), file), oneLine(`${file}: winogrande document 2: sentence "no blank here" has no blank "_"; fix the document or remove it from the data`));
  assert.equal((await loadTask(getTask('winogrande'), file, { limit: 2 })).subtasks[0].docs.length, docs.length);
  writeFileSync(file, docs.map((d, i) => JSON.stringify(i === 1 ? { ...d, answer: '3' } : d)).join('\n'));
  await assert.rejects(loadTask(getTask('winogrande'), file), oneLine(`${file}: winogrande document 1: answer "3" is not "1" or "2"; fix the document`));
  const arc = join(TMP, 'arc.jsonl');
  writeFileSync(arc, lines(join(FIX, 'arc_easy.jsonl')).map((l, i) => (i === 0 ? JSON.stringify({ ...JSON.parse(l), answerKey: 'Z' }) : l)).join('\n'));
  await assert.rejects(loadTask(getTask('arc_easy'), arc), oneLine(`${arc}: arc_easy document 0: answerKey "Z" is not one of the choice labels ["A", "B", "C", "D"]; fix the document`));
});

test('a few-shot document the task cannot use is refused when drawn, naming the few-shot split\'s file and the document it was drawn for', async () => {
  await initBackend('wasm');
  const model = join(TMP, 'tiny');
  await writeLlama3Tiny(model);
  const dir = join(TMP, 'arc');
  mkdirSync(dir, { recursive: true });
  const rows = lines(join(FIX, 'arc_easy.jsonl'));
  writeFileSync(join(dir, 'test.jsonl'), rows.slice(0, 2).join('\n'));
  const train = join(dir, 'train.jsonl');
  writeFileSync(train, JSON.stringify({ ...JSON.parse(rows[2]), answerKey: 'Z' }));
  const input = await loadTask(getTask('arc_easy'), dir, { shots: 1 }); // the few-shot split is read whole; its documents are checked when drawn
  const m = loadModel(model);
  const before = tf.memory().numTensors;
  try {
    await assert.rejects(evaluateTasks({ model: m, tokenizer: await loadTokenizer(model), tasks: [input] }),
      oneLine(`${train}: arc_easy few-shot document 0 (drawn for document 0): answerKey "Z" is not one of the choice labels`, '; fix the document or remove it from the data'));
    assert.equal(tf.memory().numTensors, before);
  } finally {
    disposeModel(m);
  }
  // a good few-shot split: the same load evaluates
  copyFileSync(join(dir, 'test.jsonl'), train);
  const m2 = loadModel(model);
  try {
    const r = await evaluateTasks({ model: m2, tokenizer: await loadTokenizer(model), tasks: [await loadTask(getTask('arc_easy'), dir, { shots: 1 })] });
    assert.equal(r.results[0].subtasks[0].records.length, 2);
  } finally {
    disposeModel(m2);
  }
});
