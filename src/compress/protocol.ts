/**
 * Calibration and merge conventions. `mka` (default) is mka's own reading of the paper; `released`
 * follows the paper's released code (pipeline.py) wherever that is a choice rather than a defect, so a
 * user can reproduce its protocol. What `released` still does not reproduce is listed in docs/method.md's
 * table of differences (the kernel built from the first prompt's tokens, the float32 kernel and its
 * safeguards, the sklearn estimator's random tie-breaking, and merges that never reach the saved model).
 */
import { UserError } from '../runtime/errors.ts';
import type { MmluData } from '../eval/mmlu/data.ts';
import type { CalibrationPrompt } from './calibration-prompts.ts';
import { formatExample } from '../eval/mmlu/prompt.ts';
import { PythonRandom } from '../runtime/python-random.ts';

export { PROTOCOLS, type Protocol } from './options.ts';
import { CALIBRATION_SEED, CALIB_SUBJECTS, PER_SUBJECT, type Protocol } from './options.ts';
import { checkOption, flag } from '../runtime/options.ts';

export interface ProtocolSettings {
  /**
   * Which hidden state is "layer l": the output of decoder block l (mka), or its input, transformers'
   * hidden_states[l] (released: the embeddings for l = 0, and the last block's output is never used).
   */
  layerStates: 'output' | 'input';
  /**
   * Calibration prompts begin with BOS as the tokenizer adds it (mka), or as transformers' tokenizer
   * with add_bos_token=False gives them (released): without BOS where the tokenizer's class obeys the
   * flag (Llama 2, Mistral), with it where the class ignores it (Llama 3: bosUnderAddBosTokenFalse).
   */
  calibrationBos: boolean;
  /** MMLU prompts are scored with BOS as the tokenizer adds it (mka), or as add_bos_token=False gives them (released, as calibrationBos). */
  scoringBos: boolean;
  /**
   * Calibration questions: mka's seeded draw (calibration-prompts.ts), or the released code's: the first N
   * subjects in sorted order and `random.sample` rows of each from Python's generator seeded with --seed.
   */
  draw: 'seeded' | 'python';
  /** Biases (q/k/v/o, MLP) of a merged layer: blended with λ like the weights (mka), or layer i's kept (released). */
  biases: 'blend' | 'keep';
}

const SETTINGS: Record<Protocol, ProtocolSettings> = {
  mka: { layerStates: 'output', calibrationBos: true, scoringBos: true, draw: 'seeded', biases: 'blend' },
  released: { layerStates: 'input', calibrationBos: false, scoringBos: false, draw: 'python', biases: 'keep' },
};

/** The settings of a protocol (mka's when none is given). */
export function protocolSettings(p: Protocol = 'mka'): ProtocolSettings {
  return SETTINGS[p];
}

/**
 * The released code's calibration questions: the first `subjects` subjects in sorted order (default all),
 * and from each `random.sample(range(rows), min(perSubject, rows))` test rows (default 1), in that order,
 * all from one Python generator seeded with `seed` (the paper's set_seed(1)). Each formatted zero-shot
 * as format_example(df, i, include_answer=False).
 */
export function releasedCalibrationPrompts(data: MmluData, opts: { subjects?: number; perSubject?: number; seed?: number } = {}): CalibrationPrompt[] {
  const sorted = [...data.subjects].sort();
  const nSubjects = opts.subjects ?? sorted.length, perSubject = opts.perSubject ?? 1, seed = opts.seed ?? CALIBRATION_SEED.default;
  checkOption(CALIB_SUBJECTS, nSubjects);
  if (nSubjects > sorted.length) throw new UserError(`${flag(CALIB_SUBJECTS)} ${nSubjects}: must be a whole number from 1 to the ${sorted.length} subjects in ${data.dir}`);
  checkOption(PER_SUBJECT, perSubject);
  checkOption(CALIBRATION_SEED, seed);
  const random = new PythonRandom(seed);
  return sorted.slice(0, nSubjects).flatMap((subject) => {
    const rows = data.test.get(subject) ?? [];
    return random.sample(rows.length, Math.min(perSubject, rows.length))
      .map((i) => ({ subject, index: rows[i].index, text: formatExample(rows[i], false) }));
  });
}
