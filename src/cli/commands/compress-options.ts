/**
 * Options shared by `similarity`, `compress` and `sweep` (calibration data and similarity parameters),
 * every method's own parameters (`compress` and `sweep`), and the typed arguments a yargs builder yields.
 */
import type { Argv } from 'yargs';
import { REPRESENTATIONS, type Representation } from '../../compress/calibration.ts';
import { DEFAULT_METRIC, DEFAULT_SIMILARITY, METRIC_NAMES, type SimilarityOptions } from '../../compress/similarity/index.ts';
import { PROTOCOLS, type Protocol } from '../../compress/methods/protocol.ts';
import { methodOptionSpecs, type MethodParameters } from '../../compress/methods/registry.ts';
import type { ParameterValue } from '../../compress/methods/method.ts';
import type { AnalysisOptions } from '../../pipeline/analyse.ts';
import { UserError } from '../../runtime/errors.ts';
import type { GlobalArgs } from '../common.ts';

/** --sigma: a positive number or `auto`. */
function parseSigma(v: unknown): number | 'auto' {
  if (v === 'auto') return 'auto';
  const x = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(x)) throw new UserError(`--sigma ${String(v)}: must be a positive number or auto`);
  return x;
}

export function calibrationOptions<T>(y: Argv<T>) {
  return y
    .option('data', { type: 'string', describe: 'MMLU directory (dev/, test/) to draw calibration prompts from', group: 'Calibration:' })
    .option('calibration', { type: 'string', describe: 'text file, one calibration prompt per line (instead of --data)', group: 'Calibration:' })
    .option('calib-subjects', { type: 'number', describe: 'how many MMLU subjects to draw calibration prompts from (default: all)', group: 'Calibration:' })
    .option('subjects', { type: 'number', hidden: true, describe: 'deprecated spelling of --calib-subjects', group: 'Calibration:' })
    .option('per-subject', { type: 'number', describe: 'questions per subject (default: 1, or more when the subjects give fewer than --k-entropy + 1 prompts)', group: 'Calibration:' })
    .option('seed', { type: 'number', default: 1, describe: 'sampling seed', group: 'Calibration:' })
    .option('representation', { choices: REPRESENTATIONS, default: 'padded' as Representation, describe: 'a prompt at a layer: padded (512 positions, one vector), last token, or mean', group: 'Calibration:' })
    .option('max-positions', { type: 'number', default: 512, describe: 'positions kept by the padded representation', group: 'Calibration:' })
    .option('micro-batch', { type: 'number', default: 8, describe: 'prompts per micro-batch inside a layer', group: 'Calibration:' })
    .option('streaming', { type: 'boolean', default: false, describe: 'read one decoder layer at a time from disk', group: 'Calibration:' })
    .option('protocol', { choices: PROTOCOLS, default: 'mka' as Protocol, describe: 'released: the paper\'s released code\'s conventions (block inputs as layers, no BOS, its calibration rows, layer i\'s biases)', group: 'Calibration:' })
    .option('metric', { choices: METRIC_NAMES, default: DEFAULT_METRIC, describe: 'layer similarity metric that MKA merges by (npib: the paper\'s); --sigma, --alpha, --dims, --k-mi and --k-entropy are npib\'s', group: 'Similarity:' })
    .option('sigma', { default: DEFAULT_SIMILARITY.sigma as number | 'auto', coerce: parseSigma, describe: 'diffusion kernel bandwidth σ, or auto (per layer: the median pairwise distance)', group: 'Similarity:' })
    .option('alpha', { type: 'number', default: DEFAULT_SIMILARITY.alpha, describe: 'density normalisation α', group: 'Similarity:' })
    .option('dims', { type: 'number', default: DEFAULT_SIMILARITY.dims, describe: 'embedding dimensions d', group: 'Similarity:' })
    .option('k-mi', { type: 'number', default: DEFAULT_SIMILARITY.kMi, describe: 'neighbours of the KSG mutual information', group: 'Similarity:' })
    .option('k-entropy', { type: 'number', default: DEFAULT_SIMILARITY.kEntropy, describe: 'neighbours of the k-NN entropy', group: 'Similarity:' })
    .option('beta', { type: 'number', default: DEFAULT_SIMILARITY.beta, describe: 'fusion ratio sharpness β', group: 'Similarity:' });
}

/** Every method's parameters as options (`compress`, `sweep`), from the methods' declarations; no yargs defaults (the methods' apply). */
export function methodOptions<T>(y: Argv<T>): Argv<T> {
  let out = y.option('fit-lambda', {
    type: 'boolean', group: 'Merging:',
    describe: 'after planning, refit each merge\'s λ so the merged block best reproduces the original blocks on the calibration activations (1-D search, layer by layer)',
  });
  for (const spec of methodOptionSpecs()) {
    const describe = `${spec.method}: ${spec.help} (default ${String(spec.default)})`;
    const group = `${spec.method === 'mka' ? 'MKA' : spec.method} (--method ${spec.method}):`;
    if (spec.type === 'choice') out = out.option(spec.option, { choices: spec.choices, describe, group });
    else if (spec.type === 'boolean') out = out.option(spec.option, { type: 'boolean', describe, group });
    else if (spec.auto) out = out.option(spec.option, { type: 'string', describe, group, coerce: (v: unknown) => (v === 'auto' ? 'auto' : Number(v)) });
    else out = out.option(spec.option, { type: 'number', describe, group });
  }
  return out;
}

/** The option names of every method parameter, and --fit-lambda. */
export const METHOD_OPTIONS: readonly string[] = ['fit-lambda', ...methodOptionSpecs().map((s) => s.option)];

export type CalibrationArgs = ReturnType<typeof calibrationOptions<GlobalArgs>> extends Argv<infer T> ? T : never;

/** The library's analysis options from parsed arguments; `log` gets the deprecation note of --subjects. */
export function analysisOptions(a: CalibrationArgs, log: (msg: string) => void): AnalysisOptions & { streaming: boolean } {
  const similarity: SimilarityOptions = { sigma: a.sigma, alpha: a.alpha, dims: a.dims, kMi: a['k-mi'], kEntropy: a['k-entropy'], beta: a.beta };
  if (a.subjects !== undefined) log('mka: --subjects is deprecated here (it counts calibration subjects); use --calib-subjects');
  return {
    data: a.data, calibrationFile: a.calibration, subjects: a['calib-subjects'] ?? a.subjects, perSubject: a['per-subject'], seed: a.seed,
    representation: a.representation, maxPositions: a['max-positions'], microBatch: a['micro-batch'], streaming: a.streaming, similarity,
    protocol: a.protocol, metric: a.metric,
  };
}

/** The method parameters given on the command line or in --config, by method (checked by the library against the declarations). */
export function methodParameters(a: object): MethodParameters {
  const args = a as Record<string, unknown>;
  const out: Record<string, Record<string, ParameterValue>> = {};
  for (const spec of methodOptionSpecs()) {
    const v = args[spec.option];
    if (v !== undefined) (out[spec.method] ??= {})[spec.name] = v as ParameterValue;
  }
  return out;
}
