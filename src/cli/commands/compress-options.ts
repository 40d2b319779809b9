/** Options shared by `similarity`, `compress` and `sweep`: calibration data and similarity parameters. */
import type { Argv } from 'yargs';
import { REPRESENTATIONS, type Representation } from '../../compress/calibration.ts';
import { DEFAULT_SIMILARITY, type SimilarityOptions } from '../../compress/similarity/index.ts';
import { PROTOCOLS, type Protocol } from '../../compress/methods/protocol.ts';

export function calibrationOptions<T>(y: Argv<T>) {
  return y
    .option('data', { type: 'string', describe: 'MMLU directory (dev/, test/) to draw calibration prompts from', group: 'Calibration:' })
    .option('calibration', { type: 'string', describe: 'text file, one calibration prompt per line (instead of --data)', group: 'Calibration:' })
    .option('subjects', { type: 'number', describe: 'MMLU subjects to sample (default: all)', group: 'Calibration:' })
    .option('per-subject', { type: 'number', describe: 'questions per subject (default: 1, or more when the subjects give fewer than --k-entropy + 1 prompts)', group: 'Calibration:' })
    .option('seed', { type: 'number', default: 1, describe: 'sampling seed', group: 'Calibration:' })
    .option('representation', { choices: REPRESENTATIONS, default: 'padded' as Representation, describe: 'a prompt at a layer: padded (512 positions, one vector), last token, or mean', group: 'Calibration:' })
    .option('max-positions', { type: 'number', default: 512, describe: 'positions kept by the padded representation', group: 'Calibration:' })
    .option('micro-batch', { type: 'number', default: 8, describe: 'prompts per micro-batch inside a layer', group: 'Calibration:' })
    .option('streaming', { type: 'boolean', default: false, describe: 'read one decoder layer at a time from disk', group: 'Calibration:' })
    .option('protocol', { choices: PROTOCOLS, default: 'mka' as Protocol, describe: 'released: the paper\'s released code\'s conventions (block inputs as layers, no BOS, its calibration rows, layer i\'s biases)', group: 'Calibration:' })
    .option('sigma', { default: DEFAULT_SIMILARITY.sigma, coerce: (v: unknown) => (v === 'auto' || !Number.isFinite(Number(v)) ? v : Number(v)), describe: 'diffusion kernel bandwidth σ, or auto (per layer: the median pairwise distance)', group: 'Similarity:' })
    .option('alpha', { type: 'number', default: DEFAULT_SIMILARITY.alpha, describe: 'density normalisation α', group: 'Similarity:' })
    .option('dims', { type: 'number', default: DEFAULT_SIMILARITY.dims, describe: 'embedding dimensions d', group: 'Similarity:' })
    .option('k-mi', { type: 'number', default: DEFAULT_SIMILARITY.kMi, describe: 'neighbours of the KSG mutual information', group: 'Similarity:' })
    .option('k-entropy', { type: 'number', default: DEFAULT_SIMILARITY.kEntropy, describe: 'neighbours of the k-NN entropy', group: 'Similarity:' })
    .option('beta', { type: 'number', default: DEFAULT_SIMILARITY.beta, describe: 'fusion ratio sharpness β', group: 'Similarity:' });
}

interface CalibrationArgs {
  data?: string; calibration?: string; subjects?: number; 'per-subject'?: number; seed: number;
  representation: Representation; 'max-positions': number; 'micro-batch': number; streaming: boolean; protocol: Protocol;
  sigma: number | 'auto'; alpha: number; dims: number; 'k-mi': number; 'k-entropy': number; beta: number;
}

/** The library's analysis options from parsed arguments. */
export function analysisOptions(a: CalibrationArgs) {
  const similarity: SimilarityOptions = { sigma: a.sigma, alpha: a.alpha, dims: a.dims, kMi: a['k-mi'], kEntropy: a['k-entropy'], beta: a.beta };
  return {
    data: a.data, calibrationFile: a.calibration, subjects: a.subjects, perSubject: a['per-subject'], seed: a.seed,
    representation: a.representation, maxPositions: a['max-positions'], microBatch: a['micro-batch'], streaming: a.streaming, similarity,
    protocol: a.protocol,
  };
}
