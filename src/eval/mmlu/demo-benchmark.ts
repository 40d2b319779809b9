/**
 * The demo benchmark: a seeded, generated multiple-choice test in the Hendrycks MMLU layout
 * (dev/<subject>_dev.csv with 5 rows, test/<subject>_test.csv), with subjects a small model can learn
 * and that exercise different skills:
 *
 *   demo_alphabet    which letter comes before/after a letter (memorised order)
 *   demo_arithmetic  a + b with a, b in 0..9, and a - b with a in 0..18, b in 0..min(a, 9)
 *   demo_comparison  the largest/smallest of four numbers (read from the choices)
 *   demo_facts       capital, national animal and flag colour of invented countries (memorised)
 *   demo_sequences   the next term of an arithmetic progression (start 0..20, step 1..5)
 *
 * Training text (trainingDocuments) also has a training-only subject, demo_matching ("Which choice is
 * X?", or in its bare form just "X" among four numbers), which teaches the one skill all subjects share:
 * binding the answer letter to the choice that holds the answer.
 *
 * The invented world (countries and their facts) is fixed by the benchmark seed. Training text comes
 * from the same generators on another random stream and never contains a dev or test question
 * verbatim (question and choices in the same order); the same question stem may recur with other
 * choices, as knowledge recurs between pretraining text and MMLU.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWriteDir, atomicWriteText } from '../../io/atomic.ts';
import { markerKind } from '../../io/output-dir.ts';
import { UserError } from '../../runtime/errors.ts';
import { mulberry32, shuffled } from '../../runtime/random.ts';
import { ANSWER_LETTERS, type AnswerLetter, type MmluQuestion, type MmluSplit } from './data.ts';
import { formatExample, promptHeader } from './prompt.ts';

/** The seed of the demo benchmark (data/demo-mmlu, generated on first use) that models/demo was trained on. */
export const DEMO_BENCHMARK_SEED = 1;
export const DEMO_SUBJECTS = ['demo_alphabet', 'demo_arithmetic', 'demo_comparison', 'demo_facts', 'demo_sequences'] as const;
export type DemoSubject = (typeof DEMO_SUBJECTS)[number];
const DEV_SIZE = 5;
const TEST_SIZE = 250;

export interface Country {
  name: string;
  capital: string;
  animal: string;
  color: string;
}

/** The invented world the facts subject asks about. */
export interface DemoWorld {
  countries: Country[];
}

export interface DemoBenchmark {
  seed: number;
  world: DemoWorld;
  subjects: DemoSubject[];
  dev: Map<DemoSubject, MmluQuestion[]>;
  test: Map<DemoSubject, MmluQuestion[]>;
}

/** A question before it is placed in a split: stem, four choices, answer letter. */
export interface DemoQuestion {
  question: string;
  choices: [string, string, string, string];
  answer: AnswerLetter;
}

type Rand = () => number;

const ANIMALS = ['bear', 'cat', 'deer', 'dog', 'eagle', 'fox', 'horse', 'lion', 'owl', 'seal', 'tiger', 'wolf'];
const COLORS = ['black', 'blue', 'green', 'orange', 'purple', 'red', 'white', 'yellow'];
const NUM_COUNTRIES = 40;
const ONSETS = ['b', 'd', 'f', 'g', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'z'];
const VOWELS = ['a', 'e', 'i', 'o', 'u'];
const COUNTRY_ENDINGS = ['ia', 'land', 'stan', 'ova'];
const CITY_ENDINGS = ['burg', 'ton', 'dor', 'mar'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/** A 32-bit seed derived from a seed and a label (FNV-1a), so each stream is independent. */
export function deriveSeed(seed: number, label: string): number {
  let h = 0x811c9dc5;
  for (const ch of `${seed}:${label}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h >>> 0;
}

const pick = <T>(xs: readonly T[], rand: Rand): T => xs[Math.floor(rand() * xs.length)];
const randInt = (lo: number, hi: number, rand: Rand): number => lo + Math.floor(rand() * (hi - lo + 1));

function syllable(rand: Rand): string {
  return pick(ONSETS, rand) + pick(VOWELS, rand);
}

/** The countries of the world: unique names and capitals, random animal and flag colour. */
function makeWorld(seed: number): DemoWorld {
  const rand = mulberry32(deriveSeed(seed, 'world'));
  const used = new Set<string>();
  const fresh = (make: () => string): string => {
    for (;;) {
      const w = make();
      if (!used.has(w)) {
        used.add(w);
        return w;
      }
    }
  };
  const cap = (w: string) => w[0].toUpperCase() + w.slice(1);
  const countries: Country[] = [];
  for (let i = 0; i < NUM_COUNTRIES; i++) {
    const name = fresh(() => cap(syllable(rand) + syllable(rand).slice(0, 1) + pick(COUNTRY_ENDINGS, rand)));
    const capital = fresh(() => cap(syllable(rand) + pick(CITY_ENDINGS, rand)));
    countries.push({ name, capital, animal: pick(ANIMALS, rand), color: pick(COLORS, rand) });
  }
  return { countries };
}

/** Puts the correct choice among three distractors at a random position. */
function place(question: string, correct: string, distractors: string[], rand: Rand): DemoQuestion {
  const choices = shuffled([correct, ...distractors.slice(0, 3)], rand) as [string, string, string, string];
  return { question, choices, answer: ANSWER_LETTERS[choices.indexOf(correct)] };
}

/** Three distinct values from `pool`, none equal to `correct`. */
function distinct(pool: readonly string[], correct: string, rand: Rand): string[] {
  return shuffled(pool.filter((x) => x !== correct), rand).slice(0, 3);
}

/** Distractor numbers correct+delta for deltas from `deltas`, kept within 0..99 and distinct. */
function nearNumbers(correct: number, deltas: number[], rand: Rand): string[] {
  const ok = [...new Set(deltas)].map((d) => correct + d).filter((v) => v >= 0 && v <= 99 && v !== correct);
  return shuffled(ok, rand).slice(0, 3).map(String);
}

/** Draws one question of `subject`. */
function generateQuestion(subject: DemoSubject, world: DemoWorld, rand: Rand): DemoQuestion {
  switch (subject) {
    case 'demo_alphabet': {
      const after = rand() < 0.5;
      const i = after ? randInt(0, 24, rand) : randInt(1, 25, rand);
      const correct = LETTERS[after ? i + 1 : i - 1];
      const near = [...LETTERS].filter((c, j) => Math.abs(j - LETTERS.indexOf(correct)) <= 3);
      return place(`Which letter comes ${after ? 'after' : 'before'} ${LETTERS[i]}?`, correct, distinct(near, correct, rand), rand);
    }
    case 'demo_arithmetic': {
      if (rand() < 0.5) {
        const a = randInt(0, 9, rand), b = randInt(0, 9, rand);
        return place(`What is ${a} + ${b}?`, String(a + b), nearNumbers(a + b, [-10, -3, -2, -1, 1, 2, 3, 10], rand), rand);
      }
      const a = randInt(0, 18, rand), b = randInt(0, Math.min(a, 9), rand);
      return place(`What is ${a} - ${b}?`, String(a - b), nearNumbers(a - b, [-10, -3, -2, -1, 1, 2, 3, 10], rand), rand);
    }
    case 'demo_comparison': {
      const largest = rand() < 0.5;
      const nums = new Set<number>();
      while (nums.size < 4) nums.add(randInt(0, 99, rand));
      const vals = [...nums];
      const correct = largest ? Math.max(...vals) : Math.min(...vals);
      return place(`Which number is the ${largest ? 'largest' : 'smallest'}?`, String(correct),
        vals.filter((v) => v !== correct).map(String), rand);
    }
    case 'demo_facts': {
      const c = pick(world.countries, rand);
      const kind = randInt(0, 2, rand);
      if (kind === 0) {
        return place(`What is the capital of ${c.name}?`, c.capital, distinct(world.countries.map((x) => x.capital), c.capital, rand), rand);
      }
      if (kind === 1) return place(`What is the national animal of ${c.name}?`, c.animal, distinct(ANIMALS, c.animal, rand), rand);
      return place(`What color is the flag of ${c.name}?`, c.color, distinct(COLORS, c.color, rand), rand);
    }
    case 'demo_sequences': {
      const a = randInt(0, 20, rand), d = randInt(1, 5, rand);
      const terms = [0, 1, 2, 3].map((k) => a + k * d);
      const next = a + 4 * d;
      return place(`What comes next: ${terms.join(', ')}?`, String(next), nearNumbers(next, [-d, d, -2, -1, 1, 2], rand), rand);
    }
  }
}

/** The training-only subject that teaches the skill every subject shares: finding a value among the choices. */
const MATCHING_SUBJECT = 'demo_matching';

/**
 * "Which choice is X?" with X among four values of one kind (numbers, letters, capitals, animals,
 * colours); `bare` asks with X alone and numbers only (the simplest form, for the start of training).
 */
function generateMatchingQuestion(world: DemoWorld, rand: Rand, bare = false): DemoQuestion {
  const numbers = Array.from({ length: 100 }, (_, i) => String(i));
  const pools: readonly (readonly string[])[] = bare ? [numbers]
    : [numbers, [...LETTERS], world.countries.map((c) => c.capital), ANIMALS, COLORS];
  const pool = pick(pools, rand);
  const correct = pick(pool, rand);
  return place(bare ? correct : `Which choice is ${correct}?`, correct, distinct(pool, correct, rand), rand);
}

/** The question as the prompt shows it (stem and lettered choices): the key for "verbatim". */
export function questionKey(q: Pick<DemoQuestion, 'question' | 'choices'>): string {
  return formatExample({ subject: '', split: 'test', index: 0, line: 0, question: q.question, choices: q.choices, answer: 'A' }, false);
}

function split(subject: DemoSubject, world: DemoWorld, seed: number, which: MmluSplit, n: number, seen: Set<string>): MmluQuestion[] {
  const rand = mulberry32(deriveSeed(seed, `${which}:${subject}`));
  const out: MmluQuestion[] = [];
  while (out.length < n) {
    const q = generateQuestion(subject, world, rand);
    const key = questionKey(q);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ subject, split: which, index: out.length, line: out.length + 1, ...q });
  }
  return out;
}

/** The whole benchmark for a seed: the world, 5 dev and TEST_SIZE test questions per subject, all distinct. */
export function generateBenchmark(seed = DEMO_BENCHMARK_SEED, testSize = TEST_SIZE): DemoBenchmark {
  const world = makeWorld(seed);
  const bench: DemoBenchmark = { seed, world, subjects: [...DEMO_SUBJECTS], dev: new Map(), test: new Map() };
  for (const subject of DEMO_SUBJECTS) {
    const seen = new Set<string>();
    bench.dev.set(subject, split(subject, world, seed, 'dev', DEV_SIZE, seen));
    bench.test.set(subject, split(subject, world, seed, 'test', testSize, seen));
  }
  return bench;
}

/** Every dev and test question key (what training text must never contain). */
export function heldOutKeys(bench: DemoBenchmark): Set<string> {
  const keys = new Set<string>();
  for (const m of [bench.dev, bench.test]) for (const qs of m.values()) for (const q of qs) keys.add(questionKey(q));
  return keys;
}

/** A CSV field, quoted (RFC 4180) when it holds a comma, quote or line break. */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The rows of one split file as CSV text (no header; question, A–D, answer). */
function questionsCsv(qs: readonly MmluQuestion[]): string {
  return qs.map((q) => [q.question, ...q.choices, q.answer].map(csvField).join(',') + '\n').join('');
}

/** Relative path → CSV text of every file of the benchmark. */
export function benchmarkFiles(bench: DemoBenchmark): Map<string, string> {
  const files = new Map<string, string>();
  for (const s of bench.subjects) {
    files.set(join('dev', `${s}_dev.csv`), questionsCsv(bench.dev.get(s)!));
    files.set(join('test', `${s}_test.csv`), questionsCsv(bench.test.get(s)!));
  }
  return files;
}

/** Writes the benchmark of `seed` as `dir`/dev and `dir`/test (the whole directory replaced atomically). */
export async function writeBenchmark(dir: string, seed = DEMO_BENCHMARK_SEED): Promise<DemoBenchmark> {
  const bench = generateBenchmark(seed);
  await writeFiles(dir, benchmarkFiles(bench));
  return bench;
}

/**
 * The benchmark of `seed` in `dir`, written only when `dir` does not already hold exactly its files
 * (missing, edited, extra, or from another generator); a directory holding other files mka did not
 * write is refused, not replaced. The demo's data/demo-mmlu (under the working directory) is not
 * committed: it is generated (in well under a second) on first use.
 */
export async function ensureBenchmark(dir: string, seed = DEMO_BENCHMARK_SEED): Promise<DemoBenchmark> {
  const bench = generateBenchmark(seed);
  const files = benchmarkFiles(bench);
  const listed = ['dev', 'test'].flatMap((split) => (existsSync(join(dir, split)) ? readdirSync(join(dir, split)).map((f) => join(split, f)) : []));
  const same = listed.length === files.size && listed.every((rel) => files.get(rel) === readFileSync(join(dir, rel), 'utf8'));
  if (!same) {
    if (existsSync(dir) && readdirSync(dir).length > 0 && markerKind(dir) !== 'demo-benchmark') {
      throw new UserError(`${dir}: holds other files than the demo benchmark, not written by mka; move them away (the demo benchmark is generated there)`);
    }
    await writeFiles(dir, files);
  }
  return bench;
}

async function writeFiles(dir: string, files: Map<string, string>): Promise<void> {
  await atomicWriteDir(dir, async (tmp) => {
    for (const [rel, text] of files) atomicWriteText(join(tmp, rel), text);
  }, 'demo-benchmark');
}

/** The world's facts as plain sentences, in a random order (training text for the facts subject). */
function factSheet(world: DemoWorld, rand: Rand): string {
  const lines: string[] = [];
  for (const c of world.countries) {
    lines.push(`The capital of ${c.name} is ${c.capital}.`);
    lines.push(`The national animal of ${c.name} is the ${c.animal}.`);
    lines.push(`The flag of ${c.name} is ${c.color}.`);
  }
  return `Facts about the world.\n\n${shuffled(lines, rand).join('\n')}\n`;
}

export interface TrainingMix {
  /** Share of fact sheets. */
  factFraction?: number;
  /** Share of few-shot blocks of the training-only matching subject. */
  matchingFraction?: number;
  /** Questions per few-shot block. */
  examples?: number;
  /** Start blocks with the prompt header (default true); false with examples 1 gives lone questions. */
  header?: boolean;
  /** Share of matching questions asked in their bare form (see generateMatchingQuestion). */
  bareMatching?: number;
}

/**
 * A stream of training documents: mostly few-shot blocks in the evaluation's prompt format (the
 * header of a random subject, then `examples` questions with their answers), some fact sheets and
 * some blocks of the matching subject. Questions whose key is in `exclude` are redrawn. Documents are
 * longer than a training sequence usually takes; the trainer cuts them.
 */
export function trainingDocuments(world: DemoWorld, seed: number, exclude: Set<string>, mix: TrainingMix = {}): () => string {
  const rand = mulberry32(deriveSeed(seed, 'train'));
  const factFraction = mix.factFraction ?? 0.1, matchingFraction = mix.matchingFraction ?? 0.15, examples = mix.examples ?? 9;
  const header = mix.header ?? true;
  return () => {
    const r = rand();
    if (r < factFraction) return factSheet(world, rand);
    const matching = r < factFraction + matchingFraction;
    const subject = matching ? MATCHING_SUBJECT : pick(DEMO_SUBJECTS, rand);
    let text = header ? promptHeader(subject) : '';
    for (let i = 0; i < examples; i++) {
      let q: DemoQuestion;
      do q = matching ? generateMatchingQuestion(world, rand, rand() < (mix.bareMatching ?? 0)) : generateQuestion(subject as DemoSubject, world, rand);
      while (exclude.has(questionKey(q)));
      text += formatExample({ subject, split: 'dev', index: i, line: 0, ...q }, true);
    }
    return text;
  };
}
