/**
 * Calibration prompts for MKA's similarity stage, drawn from the MMLU test split as the paper does:
 * N subjects (--calib-subjects) × M questions per subject (--per-subject), each formatted zero-shot as the question, its four
 * choices and "Answer:" (format_example without answer and without the subject header, exactly the text
 * the paper's pipeline.py feeds the model).
 *
 * Choice of questions: the paper takes the first N subjects in sorted order and M random rows of each
 * (Python's random.sample). Here the draw uses our own seeded PRNG (mulberry32, integer arithmetic only),
 * so it is the same on every platform but not the paper's exact rows. With subjectOrder 'seeded' (default)
 * the N subjects are a seeded sample when N is less than all; 'first' takes the first N sorted subjects
 * as the paper does. All subjects' questions are then sampled without replacement from one PRNG stream.
 */
import { UserError } from '../runtime/errors.ts';
import { checkOption, flag, OptionError } from '../runtime/options.ts';
import { MAX_SEED, mulberry32u } from '../runtime/random.ts';
import type { MmluData } from '../eval/mmlu/data.ts';
import { formatExample } from '../eval/mmlu/prompt.ts';
import { CALIBRATION_SEED, CALIB_SUBJECTS, PER_SUBJECT, PROTOCOL } from './options.ts';

export interface CalibrationPrompt {
  subject: string;
  /** Row of the question in <subject>_test.csv (0-based). */
  index: number;
  text: string;
}

export interface CalibrationOptions {
  /** Number of subjects (default: all loaded). */
  subjects?: number;
  /** Questions per subject (default 1; a subject with fewer questions gives all it has). */
  perSubject?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** How the subjects are chosen when fewer than all: seeded sample (default) or first N sorted. */
  subjectOrder?: 'seeded' | 'first';
}

/**
 * The seed of a run under mka's protocol, whose calibration draw takes a 32-bit seed: refused above
 * MAX_SEED naming the range and --protocol released (whose Python generator takes up to 2^53 − 1).
 * Checked whatever the prompts' source, so that a seed means the same with --data and --calibration.
 */
export function checkSeededDraw(seed: number): number {
  checkOption(CALIBRATION_SEED, seed);
  if (seed > MAX_SEED) {
    throw new OptionError(CALIBRATION_SEED, `${flag(CALIBRATION_SEED)} ${seed}: must be an integer from 0 to ${MAX_SEED} for mka's calibration draw, whose generator takes a 32-bit seed (${flag(PROTOCOL)} released draws with Python's generator, which takes up to ${Number.MAX_SAFE_INTEGER})`);
  }
  return seed;
}

/** Uniform integer in [0, n) from a 32-bit generator, by rejection (no modulo bias). */
function below(next: () => number, n: number): number {
  const limit = 0x100000000 - (0x100000000 % n);
  for (;;) {
    const x = next();
    if (x < limit) return x % n;
  }
}

/** k distinct indices from [0, n), sorted ascending (partial Fisher–Yates). */
export function sampleIndices(n: number, k: number, next: () => number): number[] {
  const pool = Array.from({ length: n }, (_, i) => i);
  const m = Math.min(k, n);
  for (let i = 0; i < m; i++) {
    const j = i + below(next, n - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, m).sort((x, y) => x - y);
}

/**
 * Draws the calibration prompts, subjects in sorted order and questions in file order within each.
 * Deterministic for given data, options and seed.
 */
export function sampleCalibrationPrompts(data: MmluData, opts: CalibrationOptions = {}): CalibrationPrompt[] {
  const all = data.subjects;
  const nSubjects = checkOption(CALIB_SUBJECTS, opts.subjects ?? all.length) as number;
  const perSubject = checkOption(PER_SUBJECT, opts.perSubject ?? 1) as number;
  const seed = checkSeededDraw(opts.seed ?? CALIBRATION_SEED.default);
  if (nSubjects > all.length) {
    throw new UserError(`${flag(CALIB_SUBJECTS)} ${nSubjects}: only ${all.length} MMLU subjects are loaded from ${data.dir}; use ${flag(CALIB_SUBJECTS)} ${all.length} or less`);
  }
  const next = mulberry32u(seed);
  const chosen = nSubjects === all.length ? all
    : opts.subjectOrder === 'first' ? all.slice(0, nSubjects)
      : sampleIndices(all.length, nSubjects, next).map((i) => all[i]);
  const prompts: CalibrationPrompt[] = [];
  for (const subject of chosen) {
    const questions = data.test.get(subject) ?? [];
    for (const i of sampleIndices(questions.length, perSubject, next)) {
      prompts.push({ subject, index: questions[i].index, text: formatExample(questions[i], false) });
    }
  }
  return prompts;
}
