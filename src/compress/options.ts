/**
 * The calibration options of `mka similarity`, `compress` and `sweep` (which prompts, how a prompt is
 * represented at a layer, which protocol), declared once (contract 5, src/runtime/options.ts). The
 * similarity metric's own options are in similarity/options.ts, a method's in its file. No tfjs here.
 */
import { flag, option } from '../runtime/options.ts';
import { MAX_SEED } from '../runtime/random.ts';

/** A prompt at a layer: its hidden states zero-padded or cut to --max-positions (one vector), the last token's, or the mean. */
export const REPRESENTATIONS = ['padded', 'last', 'mean'] as const;
export type Representation = (typeof REPRESENTATIONS)[number];

/** Calibration and merge conventions: mka's reading of the paper, or the paper's released code (compress/protocol.ts). */
export const PROTOCOLS = ['mka', 'released'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

const G = 'Calibration:';

export const CALIBRATION_DATA = option({
  name: 'data', option: 'data', type: 'string', path: 'directory', hub: 'mmlu', group: G,
  help: 'MMLU directory (dev/, test/) to draw calibration prompts from, or a hub dataset in cais/mmlu\'s layout',
});
export const CALIBRATION_FILE = option({
  name: 'calibrationFile', option: 'calibration', type: 'string', path: 'file', group: G,
  help: 'text file, one calibration prompt per line (instead of --data)',
});
export const CALIB_SUBJECTS = option({
  name: 'subjects', option: 'calib-subjects', type: 'integer', min: 1, group: G,
  help: 'how many MMLU subjects to draw calibration prompts from (default: all)',
});
/** The deprecated spelling of --calib-subjects (its value is used when --calib-subjects is not given, with a warning). */
export const CALIB_SUBJECTS_DEPRECATED = option({
  name: 'subjectsDeprecated', option: 'subjects', type: 'integer', min: 1, hidden: true, group: G,
  help: 'deprecated spelling of --calib-subjects',
});
export const PER_SUBJECT = option({
  name: 'perSubject', option: 'per-subject', type: 'integer', min: 1, group: G,
  help: 'questions per subject (default: 1, or more when the subjects give fewer than --k-entropy + 1 prompts)',
});
export const PROTOCOL = option({
  name: 'protocol', option: 'protocol', type: 'choice', choices: PROTOCOLS, default: 'mka', group: G,
  help: 'released: the paper\'s released code\'s conventions (block inputs as layers, no BOS, its calibration rows, layer i\'s biases)',
});
/**
 * The calibration draw's seed: mka's draw (mulberry32) takes one up to MAX_SEED and refuses a larger one
 * (calibration-prompts.ts); the released protocol's, Python's generator, takes any up to 2^53 − 1.
 */
export const CALIBRATION_SEED = option({
  name: 'seed', option: 'seed', type: 'integer', min: 0, default: 1, group: G,
  help: `sampling seed: up to ${MAX_SEED}, or ${Number.MAX_SAFE_INTEGER} with ${flag(PROTOCOL)} released (Python's random.seed)`,
});
/** CALIBRATION_SEED of a command that always draws with mka's 32-bit generator (quantize). */
export const SEEDED_CALIBRATION_SEED = option({ ...CALIBRATION_SEED, max: MAX_SEED, help: 'sampling seed' });
export const REPRESENTATION = option({
  name: 'representation', option: 'representation', type: 'choice', choices: REPRESENTATIONS, default: 'padded', group: G,
  help: 'a prompt at a layer: padded (--max-positions positions, one vector), last token, or mean',
});
export const MAX_POSITIONS = option({
  name: 'maxPositions', option: 'max-positions', type: 'integer', min: 1, default: 512, group: G,
  help: 'positions kept by the padded representation',
});
export const MICRO_BATCH = option({
  name: 'microBatch', option: 'micro-batch', type: 'integer', min: 1, default: 8, group: G,
  help: 'prompts per micro-batch inside a layer',
});
export const CALIBRATION_STREAMING = option({
  name: 'streaming', option: 'streaming', type: 'boolean', default: false, group: G,
  help: 'read one decoder layer at a time from disk',
});

/** The calibration options but --data (which `sweep` requires: it evaluates on the same benchmark), in --help order. */
export const CALIBRATION_SETTINGS = [
  CALIBRATION_FILE, CALIB_SUBJECTS, CALIB_SUBJECTS_DEPRECATED, PER_SUBJECT, CALIBRATION_SEED,
  REPRESENTATION, MAX_POSITIONS, MICRO_BATCH, CALIBRATION_STREAMING, PROTOCOL,
] as const;

/** The calibration options, in --help order. */
export const CALIBRATION_OPTIONS = [CALIBRATION_DATA, ...CALIBRATION_SETTINGS] as const;
