/**
 * Every compression method by name, and what derives from their declarations (method.ts): the
 * parameters' option specs for the command line, their checks, their defaults, and which inputs a
 * method needs with given parameters.
 */
import { UserError } from '../../runtime/errors.ts';
import { flagOf, type AnyMethod, type InputName, type ParameterSpec, type ParameterValue } from './method.ts';
import { mka } from './mka.ts';
import { reverse } from './reverse.ts';
import { shortgpt } from './shortgpt.ts';
import { angular } from './angular.ts';
import { magnitude } from './magnitude.ts';
import { taylor } from './taylor.ts';
import { sleb } from './sleb.ts';
import { laco } from './laco.ts';

export const METHODS: readonly AnyMethod[] = [mka, laco, reverse, shortgpt, angular, sleb, taylor, magnitude];

/** Parameters given for methods, by method name then parameter name (a method's defaults fill in the rest). */
export type MethodParameters = Partial<Record<string, Partial<Record<string, ParameterValue>>>>;

/** The method called `name`, or a UserError listing the known ones. */
export function getMethod(name: string): AnyMethod {
  const m = METHODS.find((x) => x.name === name);
  if (!m) throw new UserError(`method ${name} is not known; methods: ${METHODS.map((x) => x.name).join(', ')}`);
  return m;
}

/** Every method's parameter declarations with the method and parameter names (what the option schema takes). */
export function methodOptionSpecs(): (ParameterSpec & { method: string; name: string })[] {
  return METHODS.flatMap((m) => Object.entries(m.parameters).map(([name, spec]) => ({ ...spec, method: m.name, name })));
}

/** The one-line error for a parameter value, or null when it fits its declaration. */
function badValue(spec: ParameterSpec, v: unknown): string | null {
  if (spec.auto && v === 'auto') return null;
  const auto = spec.auto ? ' or auto' : '';
  switch (spec.type) {
    case 'boolean':
      return typeof v === 'boolean' ? null : 'must be true or false';
    case 'choice':
      return typeof v === 'string' && spec.choices!.includes(v) ? null : `must be one of ${spec.choices!.join(', ')}`;
    case 'number':
    case 'integer': {
      const range = spec.min !== undefined && spec.max !== undefined ? ` from ${spec.min} to ${spec.max}`
        : spec.min !== undefined ? `, ${spec.min} or more` : spec.max !== undefined ? `, ${spec.max} or less` : '';
      const what = `must be ${spec.type === 'integer' ? 'a whole number' : 'a number'}${range}${auto}`;
      if (typeof v !== 'number' || !Number.isFinite(v) || (spec.type === 'integer' && !Number.isInteger(v))) return what;
      if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) return what;
      return null;
    }
  }
}

/** Checks the parameters given for `method` against its declarations: a UserError naming the option. */
export function checkParameters(method: AnyMethod, given: Partial<Record<string, unknown>> = {}): void {
  for (const [name, v] of Object.entries(given)) {
    if (v === undefined) continue;
    const spec = method.parameters[name];
    if (!spec) throw new UserError(`${method.name} has no parameter ${name}; its parameters: ${Object.values(method.parameters).map(flagOf).join(', ') || 'none'}`);
    const why = badValue(spec, v);
    if (why) throw new UserError(`${flagOf(spec)} ${String(v)}: ${why}`);
  }
}

/** A method's parameters: its defaults, overridden by those given for it in `params` (checked). */
export function parametersOf(method: AnyMethod, params: MethodParameters = {}): Record<string, ParameterValue> {
  const given = params[method.name] ?? {};
  checkParameters(method, given);
  const out: Record<string, ParameterValue> = {};
  for (const [name, spec] of Object.entries(method.parameters)) out[name] = given[name] ?? spec.default;
  return out;
}

/** The parameters given for methods that differ from their defaults (what a sweep's key records), by method. */
export function nonDefaultParameters(params: MethodParameters = {}): Record<string, Record<string, ParameterValue>> {
  const out: Record<string, Record<string, ParameterValue>> = {};
  for (const m of METHODS) {
    for (const [name, v] of Object.entries(params[m.name] ?? {})) {
      if (v !== undefined && m.parameters[name] && v !== m.parameters[name].default) (out[m.name] ??= {})[name] = v;
    }
  }
  return out;
}

/** The inputs `method` reads with the parameters given in `params`. */
export function needsOf(method: AnyMethod, params: MethodParameters = {}): readonly InputName[] {
  return method.needs ? method.needs(parametersOf(method, params)) : method.inputs;
}

/** Inputs computed by the calibration pass (the pass also gives what similarity needs). */
const FROM_CALIBRATION: readonly InputName[] = ['similarity', 'blockInfluence', 'lastStates'];
/** Inputs that run the model on the calibration prompts. */
const FROM_PROMPTS: readonly InputName[] = [...FROM_CALIBRATION, 'scorer', 'gradients', 'recalibrate'];
/** What a sweep's analysis.json stores. */
const FROM_SUMMARY: readonly InputName[] = ['similarity', 'blockInfluence'];

/** Whether `method` runs the model on calibration prompts with these parameters. */
export function needsPrompts(method: AnyMethod, params?: MethodParameters): boolean {
  return needsOf(method, params).some((k) => FROM_PROMPTS.includes(k));
}

/** Whether it needs the calibration pass (similarity, block influence or last-token states). */
export function needsCalibrationPass(method: AnyMethod, params?: MethodParameters): boolean {
  return needsOf(method, params).some((k) => FROM_CALIBRATION.includes(k));
}

/** Whether it needs a similarity matrix (of the original, or of partly merged models). */
export function needsSimilarity(method: AnyMethod, params?: MethodParameters): boolean {
  return needsOf(method, params).some((k) => k === 'similarity' || k === 'recalibrate');
}

/** Whether it plans from a stored analysis alone (the similarity matrix and the block influence). */
export function plansFromSummary(method: AnyMethod, params?: MethodParameters): boolean {
  return needsOf(method, params).every((k) => FROM_SUMMARY.includes(k));
}
