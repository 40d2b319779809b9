import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SHARED, NO_SHARED } from './helpers.ts';
import { UserError } from '../src/runtime/errors.ts';
import { parseCsv } from '../src/eval/mmlu/csv.ts';
import { loadMmlu, type MmluQuestion } from '../src/eval/mmlu/data.ts';
import {
  buildPrompt, checkNtrain, fitPrompt, formatExample, formatSubject, genPrompt, promptParts, summarizeFits,
} from '../src/eval/mmlu/prompt.ts';
import {
  MMLU_CATEGORIES, MMLU_SUBCATEGORIES, MMLU_SUBJECTS, SUBCATEGORY_CATEGORY, categoryOf, subcategoryOf,
} from '../src/eval/mmlu/categories.ts';
import { sampleCalibrationPrompts, sampleIndices } from '../src/compress/calibration-prompts.ts';
import { mulberry32u as mulberry32 } from '../src/runtime/random.ts';
import { aggregateScores } from '../src/eval/mmlu/scores.ts';
import { scratchDir } from './scratch.ts';

const MMLU_DIR = SHARED ? join(SHARED, 'data', 'mmlu') : '';

/** Writes files (relative path → content) into a fresh temp dir; returns the dir. */
function tempLayout(files: Record<string, string>): string {
  const dir = scratchDir('mmlu');
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

/** Runs fn on a temp layout and expects a UserError whose message matches every pattern. */
function expectUserError(files: Record<string, string>, fn: (dir: string) => unknown, ...patterns: (string | RegExp)[]): void {
  const dir = tempLayout(files);
  try {
    assert.throws(() => fn(dir), (e: unknown) => {
      assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
      for (const p of patterns) {
        const want = typeof p === 'string' ? p.replaceAll('<dir>', dir) : p;
        if (typeof want === 'string') assert.ok(e.message.includes(want), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(want)}`);
        else assert.match(e.message, want);
      }
      assert.ok(!e.message.includes('\n'), 'error message must be one line');
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const ROW = (q: string, ans = 'A') => `${q},a,b,c,d,${ans}\n`;
const DEV5 = ROW('d0', 'A') + ROW('d1', 'B') + ROW('d2', 'C') + ROW('d3', 'D') + ROW('d4', 'A');

function question(subject: string, i: number, text = `q${i}`): MmluQuestion {
  return { subject, split: 'dev', index: i, line: i + 1, question: text, choices: ['w', 'x', 'y', 'z'], answer: 'B' };
}

test('csv: quoted commas, embedded \\r\\n and \\n, escaped quotes, line numbers', () => {
  const text = '\ufeffplain,"a, b","line1\r\nline2","say ""hi""",x"y,\r\n'
    + '"multi\nline\nfield",2,3,4,5,6\n'
    + '\n'
    + 'last,,"","",e,F';
  const rows = parseCsv(text, 'mem.csv');
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[0], { line: 1, fields: ['plain', 'a, b', 'line1\r\nline2', 'say "hi"', 'x"y', ''] });
  assert.deepEqual(rows[1], { line: 3, fields: ['multi\nline\nfield', '2', '3', '4', '5', '6'] });
  assert.deepEqual(rows[2], { line: 7, fields: ['last', '', '', '', 'e', 'F'] });
  assert.deepEqual(parseCsv('a,b\rc,d\r\n'), [{ line: 1, fields: ['a', 'b'] }, { line: 2, fields: ['c', 'd'] }]);
  assert.deepEqual(parseCsv(''), []);
});

test('csv: unterminated quote and junk after a closing quote name the file and line', () => {
  assert.throws(() => parseCsv('a,b\n"open\nstill open', 'f.csv'), (e: unknown) =>
    e instanceof UserError && e.message.startsWith('f.csv:2: quoted field never closed'));
  assert.throws(() => parseCsv('a\n"x\ny"z,b', 'g.csv'), (e: unknown) =>
    e instanceof UserError && e.message.startsWith('g.csv:3: unexpected "z" after the closing quote'));
});

test('prompt: format functions follow format_subject / format_example / gen_prompt', () => {
  assert.equal(formatSubject('abstract_algebra'), ' abstract algebra');
  assert.equal(formatSubject('virology'), ' virology');
  const dev = [question('s_t', 0), question('s_t', 1)];
  assert.equal(formatExample(dev[0], false), 'q0\nA. w\nB. x\nC. y\nD. z\nAnswer:');
  assert.equal(formatExample(dev[0]), 'q0\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\n');
  const header = 'The following are multiple choice questions (with answers) about  s t.\n\n';
  assert.equal(genPrompt(dev, 's_t', 0), header);
  assert.equal(genPrompt(dev, 's_t', 1), header + formatExample(dev[0]));
  assert.equal(genPrompt(dev, 's_t'), header + formatExample(dev[0]) + formatExample(dev[1]));
  assert.throws(() => genPrompt(dev, 's_t', 3), UserError);
});

test('prompt: fitPrompt drops dev examples from the end, then flags the question for truncation', () => {
  const dev = [0, 1, 2, 3, 4].map((i) => question('abstract_algebra', i, `dev question ${i}`));
  const q = { ...question('abstract_algebra', 7, 'the test question'), split: 'test' as const };
  const calls: number[] = [];
  const count = (t: string) => { calls.push(t.length); return t.length; };
  const full = genPrompt(dev, q.subject, 5) + formatExample(q, false);
  const three = genPrompt(dev, q.subject, 3) + formatExample(q, false);

  const fits = fitPrompt(q, dev, 5, count, full.length);
  assert.deepEqual([fits.ntrainKept, fits.droppedExamples, fits.truncatedQuestion, fits.prompt], [5, 0, false, full]);

  const cut = fitPrompt(q, dev, 5, count, three.length);
  assert.equal(cut.ntrainKept, 3);
  assert.equal(cut.droppedExamples, 2);
  assert.equal(cut.prompt, three);
  assert.ok(cut.prompt.includes('dev question 2') && !cut.prompt.includes('dev question 3'), 'the first examples are kept');
  assert.equal(cut.prefix + cut.question, cut.prompt);
  assert.equal(fitPrompt(q, dev, 5, count, three.length + 1).ntrainKept, 3);

  const bare = genPrompt(dev, q.subject, 0) + formatExample(q, false);
  const zero = fitPrompt(q, dev, 5, count, bare.length);
  assert.deepEqual([zero.ntrainKept, zero.truncatedQuestion], [0, false]);
  const over = fitPrompt(q, dev, 5, count, 10);
  assert.deepEqual([over.ntrainKept, over.droppedExamples, over.truncatedQuestion, over.prompt], [0, 5, true, bare]);

  assert.deepEqual(summarizeFits([fits, cut, zero, over]),
    { prompts: 4, promptsWithDroppedExamples: 3, droppedExamples: 12, truncatedQuestions: 1 });
  assert.throws(() => fitPrompt(q, dev, -1, count, 100), UserError);
});

test('data: malformed files give one-line errors naming the file and line', () => {
  const load = (dir: string) => loadMmlu(dir);
  expectUserError({ 'dev/x_dev.csv': DEV5, 'test/x_test.csv': ROW('t0') + '"a, b",c,d,e,f,B\n"multi\nline",1,2,3,4,A\nq,1,2,3,A\n' },
    load, '<dir>/test/x_test.csv:5: expected 6 fields (question, 4 choices, answer), got 5');
  expectUserError({ 'dev/x_dev.csv': DEV5, 'test/x_test.csv': ROW('t0') + ROW('t1', 'E') },
    load, '<dir>/test/x_test.csv:2: answer "E" is not one of A, B, C, D');
  expectUserError({ 'dev/x_dev.csv': ROW('d0', 'a'), 'test/x_test.csv': ROW('t0') },
    load, '<dir>/dev/x_dev.csv:1: answer "a"');
  expectUserError({ 'dev/x_dev.csv': DEV5, 'test/x_test.csv': ROW('t0'), 'test/y_test.csv': ROW('t0') },
    load, '<dir>/dev/y_dev.csv: missing, but <dir>/test/y_test.csv exists', 'even with --ntrain 0', 'leave "y" out');
  expectUserError({}, load, '<dir>/test: missing test/ folder');
  expectUserError({ 'test/readme.txt': 'x' }, load, '<dir>/test: no <subject>_test.csv files');
  expectUserError({}, (dir) => loadMmlu(join(dir, 'nope')), '<dir>/nope: MMLU data directory not found');
  expectUserError({ 'dev/x_dev.csv': DEV5, 'test/x_test.csv': '' }, load, '<dir>/test/x_test.csv: no questions');
  expectUserError({ 'dev/x_dev.csv': DEV5, 'test/x_test.csv': '"open,a,b,c,d,A\n' }, load, '<dir>/test/x_test.csv:1: quoted field never closed');
  expectUserError({ 'dev/astronomy_dev.csv': DEV5, 'test/astronomy_test.csv': ROW('t0'), 'dev/anatomy_dev.csv': DEV5, 'test/anatomy_test.csv': ROW('t0') },
    (dir) => loadMmlu(dir, { subjects: ['astronmy'] }), 'unknown MMLU subject "astronmy"', 'did you mean astronomy?');
  expectUserError({ 'dev/x_dev.csv': ROW('d0'), 'test/x_test.csv': ROW('t0') },
    (dir) => checkNtrain(loadMmlu(dir), 2), '<dir>/dev/x_dev.csv: --ntrain 2 asks for more dev examples than the 1');
});

test('data: a small valid layout loads, with answer whitespace trimmed and fields kept as they are', () => {
  const dir = tempLayout({
    'dev/b_c_dev.csv': DEV5.replace('d0,a,b,c,d,A', 'd0,a,b,c,d,A '),
    'test/b_c_test.csv': '" lead space","x, y","1\r\n2",c,d,B\r\nt1,a,b,c,d,C',
    'dev/a_dev.csv': DEV5, 'test/a_test.csv': ROW('t0', 'D'),
    'val/a_val.csv': ROW('v0', 'C'),
  });
  try {
    const data = loadMmlu(dir);
    assert.deepEqual(data.subjects, ['a', 'b_c']);
    assert.equal(data.dev.get('b_c')![0].answer, 'A');
    const t = data.test.get('b_c')!;
    assert.deepEqual(t.map((q) => [q.index, q.line, q.answer]), [[0, 1, 'B'], [1, 3, 'C']]);
    assert.deepEqual([t[0].question, ...t[0].choices], [' lead space', 'x, y', '1\r\n2', 'c', 'd']);
    assert.deepEqual(data.val.get('a')!.map((q) => [q.split, q.question]), [['val', 'v0']]);
    const { prefix, question: part } = promptParts(data.dev.get('b_c')!, t[1], 2);
    assert.equal(prefix + part, buildPrompt(data, t[1], 2));
    assert.equal(prefix, genPrompt(data.dev.get('b_c')!, 'b_c', 2));
    assert.deepEqual(loadMmlu(dir, { subjects: ['b_c'] }).subjects, ['b_c']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('categories: 57 subjects, 17 subcategories, 4 categories', () => {
  assert.equal(MMLU_SUBJECTS.length, 57);
  assert.equal(new Set(MMLU_SUBCATEGORIES).size, 17);
  assert.deepEqual(new Set(MMLU_SUBJECTS.map(subcategoryOf)), new Set(MMLU_SUBCATEGORIES));
  assert.deepEqual(new Set(Object.values(SUBCATEGORY_CATEGORY)), new Set(MMLU_CATEGORIES));
  const counts = Object.fromEntries(MMLU_CATEGORIES.map((c) => [c, MMLU_SUBJECTS.filter((s) => categoryOf(s) === c).length]));
  assert.deepEqual(counts, { STEM: 18, humanities: 13, 'social sciences': 12, other: 14 });
  assert.equal(subcategoryOf('high_school_statistics'), 'math');
  assert.equal(categoryOf('human_sexuality'), 'social sciences');
  assert.equal(categoryOf('professional_accounting'), 'other');
  assert.equal(categoryOf('toString'), 'other', 'a prototype name is not a subject');
  assert.equal(subcategoryOf('demo_arithmetic'), 'other', 'custom subjects count as other');
});

test('calibration: mulberry32 matches reference values and sampling is deterministic', () => {
  // Reference: the first outputs of mulberry32 (seed 1 and 42) computed independently in Python.
  const r1 = mulberry32(1);
  assert.deepEqual([r1(), r1(), r1()], [2693262067, 11749833, 2265367787]);
  const r42 = mulberry32(42);
  assert.deepEqual([r42(), r42()], [2581720956, 1925393290]);

  const s = sampleIndices(100, 10, mulberry32(7));
  assert.equal(new Set(s).size, 10);
  assert.ok(s.every((i, j) => i >= 0 && i < 100 && (j === 0 || s[j - 1] < i)));
  assert.deepEqual(sampleIndices(3, 10, mulberry32(7)), [0, 1, 2]);

  const subjects = ['a', 'b', 'c', 'd'];
  const data = {
    dir: 'mem', subjects,
    dev: new Map(), val: new Map(),
    test: new Map(subjects.map((sub, k) => [sub, Array.from({ length: 20 + k }, (_, i) => ({ ...question(sub, i), split: 'test' as const }))])),
  };
  const a = sampleCalibrationPrompts(data, { subjects: 2, perSubject: 3, seed: 5 });
  assert.deepEqual(a, sampleCalibrationPrompts(data, { subjects: 2, perSubject: 3, seed: 5 }));
  assert.equal(a.length, 6);
  assert.equal(new Set(a.map((p) => p.subject)).size, 2);
  assert.equal(new Set(a.map((p) => `${p.subject}/${p.index}`)).size, 6);
  assert.notDeepEqual(a, sampleCalibrationPrompts(data, { subjects: 2, perSubject: 3, seed: 6 }));
  for (const p of a) assert.equal(p.text, formatExample(data.test.get(p.subject)![p.index], false));
  assert.ok(!a[0].text.startsWith('The following'), 'zero-shot, no header');
  const all = sampleCalibrationPrompts(data);
  assert.deepEqual(all.map((p) => p.subject), subjects);
  assert.deepEqual(sampleCalibrationPrompts(data, { subjects: 2, perSubject: 1, subjectOrder: 'first' }).map((p) => p.subject), ['a', 'b']);
  assert.equal(sampleCalibrationPrompts(data, { perSubject: 100 }).length, 20 + 21 + 22 + 23);
  assert.throws(() => sampleCalibrationPrompts(data, { subjects: 5 }), UserError);
  assert.throws(() => sampleCalibrationPrompts(data, { perSubject: 0 }), UserError);
});

test('scores: per subject, subcategory, category, micro and macro', () => {
  const results = [
    ...[true, true, true, false].map((correct) => ({ subject: 'abstract_algebra', correct })), // math, STEM: 3/4
    ...[true, false].map((correct) => ({ subject: 'college_physics', correct })), // physics, STEM: 1/2
    { subject: 'philosophy', correct: false }, // philosophy, humanities: 0/1
    { subject: 'formal_logic', correct: true }, // philosophy, humanities: 1/1
  ];
  const s = aggregateScores(results);
  assert.deepEqual(s.subjects.map((x) => [x.name, x.correct, x.total]),
    [['abstract_algebra', 3, 4], ['college_physics', 1, 2], ['formal_logic', 1, 1], ['philosophy', 0, 1]]);
  assert.deepEqual(s.subcategories.map((x) => [x.name, x.correct, x.total, x.subjects]),
    [['physics', 1, 2, 1], ['math', 3, 4, 1], ['philosophy', 1, 2, 2]]);
  assert.deepEqual(s.categories.map((x) => [x.name, x.accuracy]), [['STEM', 4 / 6], ['humanities', 0.5]]);
  assert.deepEqual(s.overall, { correct: 5, total: 8, subjects: 4, micro: 5 / 8, macro: (0.75 + 0.5 + 1 + 0) / 4 });
  assert.deepEqual(aggregateScores([{ subject: 'not_a_subject', correct: true }]).categories.map((x) => x.name), ['other'], 'custom subjects count as other');
});

test('shared MMLU: full load, categories for every subject, real-data quirks', { skip: NO_SHARED }, () => {
  const data = loadMmlu(MMLU_DIR);
  assert.equal(data.subjects.length, 57);
  assert.deepEqual(data.subjects, [...MMLU_SUBJECTS]);
  const count = (m: Map<string, MmluQuestion[]>) => [...m.values()].reduce((s, qs) => s + qs.length, 0);
  assert.equal(count(data.dev), 285);
  assert.equal(count(data.test), 14042);
  for (const s of data.subjects) {
    assert.equal(data.dev.get(s)!.length, 5, s);
    assert.ok(MMLU_CATEGORIES.includes(categoryOf(s)), s);
  }
  assert.ok(data.dev.get('college_mathematics')![2].question.includes('?\r\nI. All of the entries'), 'embedded \\r\\n kept');
  assert.ok(data.test.get('college_medicine')![0].question.startsWith('A police officer'), 'BOM skipped');
  assert.ok(data.test.get('world_religions')![170].question.startsWith(' The numen'), 'leading space kept');
  assert.equal(data.test.get('college_computer_science')![10].choices[0], 'None', '"None" stays text');
  const cal = sampleCalibrationPrompts(data, { subjects: 57, perSubject: 1, seed: 1 });
  assert.equal(cal.length, 57);
  assert.deepEqual(cal, sampleCalibrationPrompts(data));
});

test('shared MMLU: prompts equal the golden prompts character for character', { skip: NO_SHARED }, () => {
  const golden = JSON.parse(readFileSync(join(SHARED ?? '', 'fixtures', 'mmlu', 'prompts-golden.json'), 'utf8')) as {
    cases: { subject: string; ntrain: number; index: number; prompt: string; answer: string }[];
  };
  const subjects = [...new Set(golden.cases.map((c) => c.subject))];
  const data = loadMmlu(MMLU_DIR, { subjects });
  assert.ok(golden.cases.some((c) => c.ntrain === 0) && golden.cases.some((c) => c.ntrain === 5));
  for (const c of golden.cases) {
    const q = data.test.get(c.subject)![c.index];
    const got = buildPrompt(data, q, c.ntrain);
    const at = [...Array(Math.max(got.length, c.prompt.length)).keys()].find((i) => got[i] !== c.prompt[i]);
    assert.equal(at, undefined, `${c.subject} #${c.index} ${c.ntrain}-shot: first difference at character ${at}: `
      + `got ${JSON.stringify(got.slice(at, (at ?? 0) + 40))}, want ${JSON.stringify(c.prompt.slice(at, (at ?? 0) + 40))}`);
    assert.equal(q.answer, c.answer);
    const { prefix, question: part } = promptParts(data.dev.get(c.subject)!, q, c.ntrain);
    assert.equal(prefix + part, c.prompt);
  }
});
