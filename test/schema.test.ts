/**
 * The schemas of files mka reads back (src/io/schema.ts): a value that fits comes back typed and whole;
 * one that does not is a one-line UserError naming the file, the field inside it, what it must be, what
 * it holds and the fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { array, boolean, checked, integer, literal, nullable, number, object, optional, range, readChecked, record, string } from '../src/io/schema.ts';
import { UserError } from '../src/runtime/errors.ts';
import { scratchDir } from './scratch.ts';

const POINT = object({
  method: string, removed: integer, kind: literal('point', 'original'), seconds: optional(number),
  accuracy: nullable(range(0, 1)), done: boolean,
  questions: array(object({ answer: literal('A', 'B', 'C', 'D'), correct: boolean })),
  metrics: record(object({ value: number, n: integer })),
});

/** The message of the UserError `f` throws. */
function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof UserError, `not a UserError: ${e}`);
    return e.message;
  }
  assert.fail('no error');
}

const good = {
  method: 'mka', removed: 2, kind: 'point', accuracy: null, done: true, extra: { kept: [1] },
  questions: [{ answer: 'B', correct: false }], metrics: { mmlu: { value: 0.5, n: 10 } },
};

test('a value that fits comes back whole (unknown fields kept, optional ones absent)', () => {
  const p = checked(good, POINT, 'p.json', 'sweep point', 'delete it');
  assert.deepEqual(p, good);
  assert.equal(p.seconds, undefined);
  assert.deepEqual(checked({ ...good, seconds: 3.5, accuracy: 1 }, POINT, 'p.json', 'sweep point', 'delete it').seconds, 3.5);
});

test('a value that does not fit names the file, the field, what it must be, what it holds, and the fix', () => {
  const cases: [unknown, string][] = [
    [[], 'the file must be an object, not an array'],
    [{ ...good, removed: 2.5 }, 'removed must be an integer, not 2.5'],
    [{ ...good, method: undefined }, 'method must be a string, not missing'],
    [{ ...good, kind: 'other' }, 'kind must be one of "point", "original", not "other"'],
    [{ ...good, seconds: '3' }, 'seconds must be a number, not "3"'],
    [{ ...good, accuracy: 1.5 }, 'accuracy must be from 0 to 1, not 1.5'],
    [{ ...good, questions: [{ answer: 'B', correct: false }, { answer: 'E', correct: true }] }, 'questions[1].answer must be one of "A", "B", "C", "D", not "E"'],
    [{ ...good, metrics: { mmlu: { value: 0.5, n: null } } }, 'metrics.mmlu.n must be an integer, not null'],
    [{ ...good, done: 'yes' }, 'done must be true or false, not "yes"'],
  ];
  for (const [value, want] of cases) {
    assert.equal(messageOf(() => checked(value, POINT, '/r/p.json', 'sweep point file', 'delete it to recompute the point')),
      `/r/p.json: not a valid sweep point file (${want}); delete it to recompute the point`);
  }
});

test('readChecked reads the file: invalid JSON and a stale shape are both one-line errors naming it', () => {
  const dir = scratchDir('schema');
  const f = join(dir, 'p.json');
  writeFileSync(f, JSON.stringify(good));
  assert.equal(readChecked(f, POINT, 'sweep point file', 'delete it').method, 'mka');
  writeFileSync(f, '{"method": "mka", ');
  assert.match(messageOf(() => readChecked(f, POINT, 'sweep point file', 'delete it')), /^\S+p\.json: sweep point file is not valid JSON/);
  writeFileSync(f, JSON.stringify({ ...good, questions: 'none' }));
  assert.match(messageOf(() => readChecked(f, POINT, 'sweep point file', 'delete it')), /^\S+p\.json: not a valid sweep point file \(questions must be an array, not "none"\); delete it$/);
});

test('a perplexity window file of an earlier run that does not fit is refused naming it, the field and the fix', async () => {
  const { openPplResults } = await import('../src/eval/ppl/results.ts');
  const { readConfig } = await import('../src/model/config.ts');
  const dir = scratchDir('schema-ppl');
  const model = { dir: 'models/demo', config: readConfig('models/demo'), compute: 'float32' } as unknown as Parameters<typeof openPplResults>[1];
  const results = openPplResults(dir, model, [1, 2, 3], { seqLen: 2 }, false);
  results.save(0, { begin: 0, end: 2, scored_from: 1, nll: 1.5, tokens: 1 });
  assert.deepEqual(results.load(0), { begin: 0, end: 2, scored_from: 1, nll: 1.5, tokens: 1 });
  assert.equal(results.load(1), null);
  writeFileSync(join(dir, 'windows', '1.json'), JSON.stringify({ begin: 0, end: 2, scored_from: 1, nll: '1.5', tokens: 1 }));
  assert.equal(messageOf(() => results.load(1)), `${join(dir, 'windows', '1.json')}: not a valid window result (nll must be a number, not "1.5"); delete the file to recompute the window`);
});

test('an MMLU subject file of an earlier run that does not fit is refused naming the question and field; one that fits resumes', async () => {
  const { openResultsDir } = await import('../src/eval/mmlu/results.ts');
  const dir = scratchDir('schema-mmlu');
  const results = openResultsDir(dir, { model: 'm', ntrain: 5 }, false);
  const q = {
    subject: 'anatomy', index: 0, answer: 'B' as const, prediction: 'B' as const, correct: true, answerLogits: [0.1, 2, -1, 0], ntrainKept: 5,
    truncated: false, cached: true, nll: 0.4, nllTokens: 2,
  };
  results.save({ subject: 'anatomy', data: 'fp', questions: [q] });
  assert.deepEqual(results.load('anatomy', 'fp')?.questions, [q]);
  const f = join(dir, 'subjects', 'anatomy.json');
  const stored = JSON.parse(readFileSync(f, 'utf8'));
  writeFileSync(f, JSON.stringify({ ...stored, questions: [q, { ...q, index: 1, answer: 'E' }] }));
  assert.equal(messageOf(() => results.load('anatomy', 'fp')),
    `${f}: not a valid subject results file (questions[1].answer must be one of "A", "B", "C", "D", not "E"); delete the file to recompute the subject`);
  writeFileSync(f, JSON.stringify({ ...stored, questions: [{ ...q, subject: 'virology' }] }));
  assert.match(messageOf(() => results.load('anatomy', 'fp')), /not the results of subject anatomy; delete the file to recompute it$/);
});

test('a sweep point file that does not fit, or holds another point, is refused naming it and the fix', async () => {
  const { readStoredPoint } = await import('../src/sweep/point.ts');
  const { pointFile } = await import('../src/sweep/points.ts');
  const out = scratchDir('schema-point');
  const p = { method: 'mka', removed: 2 };
  const row = { name: 'all', subjects: 1, questions: 4, correct: 3, accuracy: 0.75, perplexity: 1.9, agreement: 0.5, kl: 0.1 };
  const point = {
    method: 'mka', layers_removed: 2, layers: 6, compression_ratio: 0.25, mmlu: 0.75, mmlu_macro: 0.75, stem: 0.75, humanities: null,
    social_sciences: null, other: null, perplexity: 1.9, ppl: null, agreement: 0.5, kl: 0.1, seconds: 3.2,
    summary: { subjects: [{ ...row, name: 'anatomy' }], subcategories: [row], categories: [row], overall: { ...row, macroAccuracy: 0.75 } },
  };
  const f = pointFile(out, p);
  mkdirSync(dirname(f), { recursive: true });
  writeFileSync(f, JSON.stringify(point));
  assert.equal(readStoredPoint(out, p)?.mmlu, 0.75);
  assert.equal(readStoredPoint(out, { method: 'mka', removed: 3 }), null);
  writeFileSync(f, JSON.stringify({ ...point, mmlu: '75%' }));
  assert.equal(messageOf(() => readStoredPoint(out, p)), `${f}: not a valid sweep point file (mmlu must be a number, not "75%"); delete it to compute the point again`);
  writeFileSync(f, JSON.stringify({ ...point, summary: { ...point.summary, categories: undefined } }));
  assert.match(messageOf(() => readStoredPoint(out, p)), /\(summary\.categories must be an array, not missing\)/);
  writeFileSync(f, JSON.stringify({ ...point, method: 'reverse' }));
  assert.equal(messageOf(() => readStoredPoint(out, p)), `${f}: holds the point reverse:2, not mka:2; delete it to compute the point again`);
});

test('recorded plans: a merge.json step and a sweep plan file that do not fit are refused naming the field', async () => {
  const { readPlanFile } = await import('../src/compress/plan-file.ts');
  const { readPlan } = await import('../src/sweep/calibrate.ts');
  const { planFile } = await import('../src/sweep/points.ts');
  const dir = scratchDir('schema-plan');
  const f = join(dir, 'merge.json');
  const identity = Array.from({ length: 8 }, (_, l) => ({ sources: [{ layer: l, weight: 1 }], norms_from: l }));
  const step = { action: 'drop', layers: [7], originalLayers: [7] };
  const plan = (steps: unknown) => JSON.stringify({ method: 'reverse', original_layers: 8, layer_sources: identity.slice(0, 7), steps });
  writeFileSync(f, plan([step]));
  assert.deepEqual(readPlanFile(f, 'models/demo').plan.steps, [step]);
  writeFileSync(f, plan([step, { ...step, action: 'keep' }]));
  assert.match(messageOf(() => readPlanFile(f, 'models/demo')), /merge\.json: not a valid --plan file \(steps\[1\]\.action must be one of "merge", "drop", not "keep"\); give a merge\.json written by mka compress/);
  writeFileSync(f, plan([{ ...step, originalLayers: [9] }]));
  assert.match(messageOf(() => readPlanFile(f, 'models/demo')), /"steps"\[0\]\.originalLayers must be layers from 0 to 7/);

  const out = scratchDir('schema-plans');
  const p = { method: 'reverse', removed: 1 };
  const stored = { method: 'reverse', originalLayers: 8, layers: identity.slice(0, 7).map((l) => ({ sources: l.sources, normsFrom: l.norms_from })), steps: [step], blendNorms: false, details: {} };
  mkdirSync(dirname(planFile(out, p)), { recursive: true });
  writeFileSync(planFile(out, p), JSON.stringify(stored));
  assert.equal(readPlan(out, p)?.layers.length, 7);
  writeFileSync(planFile(out, p), JSON.stringify({ ...stored, layers: [{ sources: [{ layer: 0 }], normsFrom: 0 }] }));
  assert.equal(messageOf(() => readPlan(out, p)), `${planFile(out, p)}: not a valid sweep plan file (layers[0].sources[0].weight must be a number, not missing); delete it, and the sweep plans the point again`);
});

test('a sweep\'s analysis.json: read as written, a file lacking planning fields plans by a pass, a wrong field is refused naming it', async () => {
  const { readAnalysis } = await import('../src/sweep/analysis-file.ts');
  const out = scratchDir('schema-analysis');
  const f = join(out, 'analysis.json');
  assert.equal(readAnalysis(out), null);
  const S = [[1, 0.5], [0.5, null]];
  writeFileSync(f, JSON.stringify({ metric: 'cka', params: { beta: 1 }, samples: 6, block_influence: [0.1, 0.2], cka: S }));
  assert.deepEqual(readAnalysis(out), { metric: 'cka', matrix: S, planning: { samples: 6, metric: 'cka', matrix: S, blockInfluence: [0.1, 0.2] } });
  writeFileSync(f, JSON.stringify({ npib: S })); // before --metric and block influence: NPIB's matrix, nothing to plan from
  assert.deepEqual(readAnalysis(out), { metric: 'npib', matrix: S, planning: null });
  writeFileSync(f, JSON.stringify({ metric: 'cka', samples: 6, block_influence: [0.1], cka: [[1, '0.5']] }));
  assert.equal(messageOf(() => readAnalysis(out)), `${f}: not a valid sweep analysis (cka[0][1] must be a number, not "0.5"); delete it and run the sweep again to recompute it`);
  writeFileSync(f, JSON.stringify({ metric: 'cka', samples: 'six', cka: S }));
  assert.match(messageOf(() => readAnalysis(out)), /analysis\.json: not a valid sweep analysis \(samples must be an integer, not "six"\); delete it/);
  writeFileSync(f, '[1, 2');
  assert.match(messageOf(() => readAnalysis(out)), /analysis\.json/);
});

test('an export reads merge.json checked: a stale or edited record is refused naming the file and the fix', async () => {
  const { exportMetadata } = await import('../src/export/metadata.ts');
  const dir = scratchDir('schema-merge');
  assert.equal(exportMetadata(dir, 'float32').merge, null, 'no merge.json: no merge recorded');
  const record = { method: 'reverse', original_layers: 2, layers: 1, steps: [{ action: 'drop', layers: [1], originalLayers: [1] }], layer_sources: [{ sources: [{ layer: 0, weight: 1 }], norms_from: 0 }], seed: 1 };
  writeFileSync(join(dir, 'merge.json'), JSON.stringify(record));
  assert.deepEqual(exportMetadata(dir, 'float32').merge, record);
  writeFileSync(join(dir, 'merge.json'), JSON.stringify({ ...record, layer_sources: [{ sources: [{ layer: '0', weight: 1 }], norms_from: 0 }] }));
  assert.equal(messageOf(() => exportMetadata(dir, 'float32')), `${join(dir, 'merge.json')}: not a valid merge.json of mka compress (layer_sources[0].sources[0].layer must be an integer, not "0"); restore the file mka compress wrote, or delete it (the model then records no merge)`);
  writeFileSync(join(dir, 'merge.json'), '[]');
  assert.match(messageOf(() => exportMetadata(dir, 'float32')), /merge\.json: not a valid merge\.json of mka compress \(the file must be an object, not an array\)/);
});

test('a safetensors index is checked by its schema when a checkpoint opens it', async () => {
  const { readSafetensorsIndex } = await import('../src/io/checkpoint.ts');
  const dir = scratchDir('schema-index');
  const f = join(dir, 'model.safetensors.index.json');
  writeFileSync(f, JSON.stringify({ metadata: { total_size: 8 }, weight_map: { 'lm_head.weight': 'model-00001-of-00001.safetensors' } }));
  assert.deepEqual(readSafetensorsIndex(f).weight_map, { 'lm_head.weight': 'model-00001-of-00001.safetensors' });
  writeFileSync(f, JSON.stringify({ weight_map: { 'lm_head.weight': ['a'] } }));
  assert.equal(messageOf(() => readSafetensorsIndex(f)), `${f}: not a valid safetensors index (weight_map.lm_head.weight must be a string, not an array); re-download or re-export the model`);
});
