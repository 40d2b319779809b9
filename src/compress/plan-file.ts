/**
 * The files a merge plan is kept in, written and read back here (one room for the format):
 *   - merge.json beside a compressed model's weights (`mergeRecord`; `planSummary` is its plan part):
 *     `original_layers`, `layer_sources` (per output layer, the original layers and weights it is made
 *     of, and the layer its norms come from), `blend_norms`, `keep_biases`, `method`, `dtype`, `steps`
 *     and `source_config_sha256` (the hash of the config.json the plan was made for), then the method's
 *     details and calibration. `mka compress --plan merge.json` (or the same fields in YAML, as mergekit
 *     configs are written) replays it on the original model without calibrating (`readPlanFile`), so a
 *     merge found once is reproduced byte for byte, or edited by hand (λ, which layers) and applied
 *     again; exports carry it into their metadata (`readMergeRecord`).
 *   - a sweep's plans/METHOD-K.json: the CompressionPlan itself (COMPRESSION_PLAN).
 * Every read is checked (src/io/schema.ts), each failure a one-line UserError naming the file and the fix.
 * No tfjs here.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { configToJson, readConfig } from '../model/config.ts';
import { isGgufFile } from '../model/files.ts';
import { describeJson, isPlainObject, parseJsonText, readTextFile, showJson } from '../io/read.ts';
import { anyJson, array, boolean, checked, integer, literal, nullable, number, object, optional, readChecked, record, string } from '../io/schema.ts';
import { UserError } from '../runtime/errors.ts';
import { flag } from '../runtime/options.ts';
import { HF_DTYPES, PLAN, type HfDtype } from '../weights/options.ts';
import type { CompressionPlan, LayerMix, PlanStep } from './merge-plan.ts';

/** One step of a plan (PlanStep in merge-plan.ts). */
export const PLAN_STEP = object({
  action: literal('merge', 'drop'), layers: array(integer), originalLayers: array(integer),
  lambda: optional(number), weights: optional(array(number)), score: optional(nullable(number)), note: optional(string),
  fit: optional(object({ lambdaPlanned: number, errorPlanned: number, error: number })),
});

/** One layer of the compressed model (LayerMix). */
const LAYER_MIX = object({ sources: array(object({ layer: integer, weight: number })), normsFrom: integer });

/** A whole plan (CompressionPlan), as a sweep stores it in plans/METHOD-K.json. */
export const COMPRESSION_PLAN = object({
  method: string, originalLayers: integer, layers: array(LAYER_MIX), steps: array(PLAN_STEP), blendNorms: boolean,
  keepBiases: optional(boolean), details: record(anyJson),
});

/** merge.json as mergeRecord writes it: the fields its readers use (the method's details and calibration are carried along unread). */
export const MERGE_RECORD = object({
  source_model: optional(string), source_config_sha256: optional(string), dtype: optional(literal(...HF_DTYPES)),
  method: optional(string), original_layers: integer, layers: optional(integer), blend_norms: optional(boolean), keep_biases: optional(boolean),
  steps: optional(array(PLAN_STEP)), layer_sources: array(object({ sources: array(object({ layer: integer, weight: number })), norms_from: integer })),
});

/** The plan part of merge.json: what was merged or dropped, with which λ. */
export function planSummary(plan: CompressionPlan): Record<string, unknown> {
  return {
    method: plan.method,
    original_layers: plan.originalLayers,
    layers: plan.layers.length,
    removed: plan.originalLayers - plan.layers.length,
    blend_norms: plan.blendNorms,
    ...(plan.keepBiases ? { keep_biases: true } : {}),
    steps: plan.steps,
    layer_sources: plan.layers.map((l) => ({ sources: l.sources, norms_from: l.normsFrom })),
    ...plan.details,
  };
}

/**
 * sha256 of a model directory's config.json bytes (of a GGUF file: of the config its metadata gives, as
 * JSON): merge.json records it so a replayed plan is checked against its model.
 */
export function configHash(dir: string): string {
  const bytes = isGgufFile(dir) ? JSON.stringify(configToJson(readConfig(dir))) : readFileSync(join(dir, 'config.json'));
  return createHash('sha256').update(bytes).digest('hex');
}

/** merge.json of a plan applied to the model in `dir` (or to an in-memory model when `dir` is undefined). */
export function mergeRecord(dir: string | undefined, plan: CompressionPlan, dtype: HfDtype, extra?: Record<string, unknown>): Record<string, unknown> {
  const source = dir ? { source_model: dir, source_config_sha256: configHash(dir) } : { source_model: dir };
  return { ...source, dtype, ...planSummary(plan), ...extra };
}

/** DIR/merge.json, checked, or null when the model directory has none (it was not compressed by mka). */
export function readMergeRecord(dir: string): Record<string, unknown> | null {
  const file = join(dir, 'merge.json');
  if (!existsSync(file)) return null;
  return readChecked(file, MERGE_RECORD, 'merge.json of mka compress', 'restore the file mka compress wrote, or delete it (the model then records no merge)');
}

/** Fields merge.json writes that the replay reads or rewrites itself. */
const OWN_FIELDS = new Set(['source_model', 'source_config_sha256', 'dtype', 'method', 'original_layers', 'layers', 'removed', 'blend_norms', 'keep_biases', 'steps', 'layer_sources', 'replayed_from']);

export interface RecordedPlan {
  plan: CompressionPlan;
  /** The dtype the plan's model was written in (merge.json's `dtype`), if recorded. */
  dtype?: HfDtype;
  /** The plan file's other fields (method details, calibration), carried into the new merge.json. */
  extra: Record<string, unknown>;
}

/**
 * Why the output layer `mix` cannot be built from a model of `layers` decoder layers, or null when it
 * can: its sources must be distinct layers of the model with weights summing to 1, its norms a layer
 * of the model. merge.json files (readPlanFile) and a sweep's stored plans are checked by it.
 */
export function mixProblem(mix: LayerMix, layers: number): string | null {
  const inRange = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < layers;
  if (mix.sources.length === 0) return 'it has no sources';
  const outside = mix.sources.find((s) => !inRange(s.layer));
  if (outside) return `it takes layer ${showJson(outside.layer)}, not one from 0 to ${layers - 1}`;
  if (new Set(mix.sources.map((s) => s.layer)).size !== mix.sources.length) return 'a layer appears twice';
  const sum = mix.sources.reduce((a, s) => a + s.weight, 0);
  if (!(Math.abs(sum - 1) <= 1e-6)) return `the weights sum to ${sum}, not 1`;
  if (!inRange(mix.normsFrom)) return `norms_from is ${showJson(mix.normsFrom)}, not a layer from 0 to ${layers - 1}`;
  return null;
}

/** Reads and checks a plan file against the model in `modelDir` it is to be applied to. */
export function readPlanFile(file: string, modelDir: string): RecordedPlan {
  const what = `${flag(PLAN)} file`;
  const text = readTextFile(file, what);
  let raw: unknown;
  if (/\.ya?ml$/i.test(file)) {
    try {
      raw = YAML.parse(text);
    } catch (e) {
      throw new UserError(`${file}: ${what} is not valid YAML (${(e as Error).message.split('\n')[0]}); give a merge.json written by mka compress`);
    }
  } else {
    raw = parseJsonText(text, file, what);
  }
  const bad = (msg: string): never => {
    throw new UserError(`${file}: ${msg}; give a merge.json written by mka compress (or fix that field)`);
  };
  if (!isPlainObject(raw)) return bad(`${what} must hold an object, not ${describeJson(raw)}`);
  const L = raw.original_layers;
  if (!Number.isInteger(L) || (L as number) < 1) bad(`"original_layers" must be a positive integer, not ${showJson(L)}`);
  const original = L as number;
  const config = readConfig(modelDir);
  if (config.num_hidden_layers !== original) {
    throw new UserError(`${file}: the plan is for a model with ${original} layers, but ${modelDir} has ${config.num_hidden_layers} (num_hidden_layers); replay it on the model it was made from${typeof raw.source_model === 'string' ? ` (${raw.source_model})` : ''}`);
  }
  if (raw.source_config_sha256 !== undefined) {
    if (typeof raw.source_config_sha256 !== 'string') bad('"source_config_sha256" must be a string');
    if (raw.source_config_sha256 !== configHash(modelDir)) {
      throw new UserError(`${file}: the plan was made for another model (its config.json differs from ${modelDir}'s: source_config_sha256 does not match); replay it on the model it was made from${typeof raw.source_model === 'string' ? ` (${raw.source_model})` : ''}, or delete "source_config_sha256" from the file to apply it anyway`);
    }
  }
  const inRange = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < original;
  if (!Array.isArray(raw.layer_sources) || raw.layer_sources.length < 1 || raw.layer_sources.length > original) {
    bad(`"layer_sources" must be a list of 1 to ${original} output layers`);
  }
  const layers: LayerMix[] = (raw.layer_sources as unknown[]).map((l, k) => {
    const at = `"layer_sources"[${k}]`;
    if (!isPlainObject(l) || !Array.isArray(l.sources) || l.sources.length < 1) return bad(`${at} must be {"sources": [{"layer": i, "weight": w}, ...], "norms_from": i}`);
    const sources = l.sources.map((s: unknown, m: number) => {
      if (!isPlainObject(s) || !inRange(s.layer) || typeof s.weight !== 'number' || !Number.isFinite(s.weight)) {
        return bad(`${at}.sources[${m}] must be {"layer": 0..${original - 1}, "weight": a finite number}`);
      }
      return { layer: s.layer, weight: s.weight };
    });
    const mix = { sources, normsFrom: l.norms_from as number };
    const problem = mixProblem(mix, original);
    if (problem) bad(`${at}: ${problem}`);
    return mix;
  });
  if (raw.layers !== undefined && raw.layers !== layers.length) bad(`"layers" is ${showJson(raw.layers)} but "layer_sources" has ${layers.length}`);
  for (const [key, type] of [['method', 'string'], ['blend_norms', 'boolean'], ['keep_biases', 'boolean']] as const) {
    if (raw[key] !== undefined && typeof raw[key] !== type) bad(`"${key}" must be a ${type}`);
  }
  if (raw.dtype !== undefined && !(HF_DTYPES as readonly unknown[]).includes(raw.dtype)) bad(`"dtype" must be one of ${HF_DTYPES.join(', ')}`);
  const { steps = [] } = checked(raw, MERGE_RECORD, file, what, 'give a merge.json written by mka compress (or fix that field)');
  for (const [k, s] of steps.entries()) {
    if (!s.originalLayers.every((l) => Number.isInteger(l) && l >= 0 && l < original)) bad(`"steps"[${k}].originalLayers must be layers from 0 to ${original - 1}`);
  }
  const extra = Object.fromEntries(Object.entries(raw).filter(([k]) => !OWN_FIELDS.has(k)));
  return {
    plan: {
      method: (raw.method as string | undefined) ?? 'plan', originalLayers: original, layers, steps: steps as PlanStep[],
      blendNorms: (raw.blend_norms as boolean | undefined) ?? false, ...(raw.keep_biases ? { keepBiases: true } : {}), details: {},
    },
    dtype: raw.dtype as HfDtype | undefined,
    extra,
  };
}
