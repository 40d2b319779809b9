/**
 * What `similarity`, `compress` and `sweep` share: their calibration and similarity options (declared
 * in compress/options.ts and compress/similarity/options.ts), every method's parameters (declared in
 * the method's own file, contract 4) and --fit-lambda, and the library's options from their values.
 */
import { CALIBRATION_DATA, CALIBRATION_SETTINGS } from '../../compress/options.ts';
import { SIMILARITY_OPTIONS } from '../../compress/similarity/options.ts';
import { METRIC } from '../../compress/similarity/registry.ts';
import { FIT_LAMBDA } from '../../pipeline/options.ts';
import { flag, option, type OptionSpec, type OptionValues } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { methodOptionSpecs, type MethodParameters } from '../../compress/methods/registry.ts';
import type { ParameterValue } from '../../compress/methods/method.ts';
import type { AnalysisOptions } from '../../pipeline/analyse.ts';

/** Calibration (without --data), then the similarity metric and its options. */
export const ANALYSIS_SETTINGS = [...CALIBRATION_SETTINGS, METRIC, ...SIMILARITY_OPTIONS] as const;

/** Calibration, then the similarity metric and its options. */
export const ANALYSIS_OPTIONS = [CALIBRATION_DATA, ...ANALYSIS_SETTINGS] as const;

/** A method parameter's option spec: its value key is the option in camelCase (`--laco-threshold`: lacoThreshold), unique across methods. */
const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Every method's parameters as options of compress and sweep; no defaults here (a method's own apply when
 * an option is not given). Their names are kept out of the commands' typed values (`name: never`):
 * methodParameters reads them by spec, so the other options keep their precise types.
 */
const PARAMETER_OPTIONS = methodOptionSpecs().map((s) => ({
  spec: s,
  option: option({
    name: camel(s.option), option: s.option, type: s.type, help: `${s.help} (default ${String(s.default)})`,
    group: `${s.method === 'mka' ? 'MKA' : s.method} (--method ${s.method}):`,
    ...(s.choices ? { choices: s.choices } : {}), ...(s.min !== undefined ? { min: s.min } : {}), ...(s.max !== undefined ? { max: s.max } : {}), ...(s.auto ? { auto: true } : {}),
  } as OptionSpec & { name: never }),
}));

/** --fit-lambda and every method's parameters, as options of compress and sweep. */
export const METHOD_OPTIONS = [FIT_LAMBDA, ...PARAMETER_OPTIONS.map((p) => p.option)] as const;

/** The library's analysis options from the values of ANALYSIS_OPTIONS; `log` gets the deprecation note of --subjects. */
export function analysisOptions(v: OptionValues<typeof ANALYSIS_SETTINGS> & { data?: string }, log: (msg: string) => void): AnalysisOptions & { streaming: boolean } {
  if (v.subjectsDeprecated !== undefined) log('mka: --subjects is deprecated here (it counts calibration subjects); use --calib-subjects');
  return {
    data: v.data, calibrationFile: v.calibrationFile, subjects: v.subjects ?? v.subjectsDeprecated, perSubject: v.perSubject, seed: v.seed,
    representation: v.representation, maxPositions: v.maxPositions, microBatch: v.microBatch, streaming: v.streaming, protocol: v.protocol,
    metric: v.metric, similarity: { sigma: v.sigma, alpha: v.alpha, dims: v.dims, kMi: v.kMi, kEntropy: v.kEntropy, beta: v.beta },
  };
}

/** The method parameters given, by method (a method's defaults fill in the rest; the library checks them against the declarations). */
export function methodParameters(v: object): MethodParameters {
  const values = v as Record<string, unknown>;
  const out: Record<string, Record<string, ParameterValue>> = {};
  for (const { spec, option: o } of PARAMETER_OPTIONS) {
    const given = values[o.name];
    if (given !== undefined) (out[spec.method] ??= {})[spec.name] = given as ParameterValue;
  }
  return out;
}

/**
 * A UserError when an option of a method the run does not use was given (it would be ignored):
 * `methods` are the run's methods, `chosen` how the command line chose them (e.g. "--method sleb").
 */
export function checkMethodOptions(v: object, methods: readonly string[], chosen: string): void {
  const values = v as Record<string, unknown>;
  const stray = PARAMETER_OPTIONS.filter(({ spec, option: o }) => values[o.name] !== undefined && !methods.includes(spec.method));
  if (!stray.length) return;
  const owners = [...new Set(stray.map((p) => p.spec.method))];
  throw new UserError(`${stray.map((p) => flag(p.option)).join(', ')}: ${stray.length > 1 ? 'options' : 'an option'} of ${owners.join(' and ')}, which this run does not use (${chosen}); leave ${stray.length > 1 ? 'them' : 'it'} out`);
}
