/**
 * The schemas of recorded plans (src/io/schema.ts): a plan's steps as merge.json holds them (read back
 * by `mka compress --plan`), and a whole plan as a sweep stores it (plans/METHOD-K.json, read by every
 * point computed later). No tfjs here.
 */
import { anyJson, array, boolean, integer, literal, nullable, number, object, optional, record, string } from '../io/schema.ts';

/** One step of a plan (PlanStep in merge-plan.ts). */
export const PLAN_STEP = object({
  action: literal('merge', 'drop'), layers: array(integer), originalLayers: array(integer),
  lambda: optional(number), weights: optional(array(number)), score: optional(nullable(number)), note: optional(string),
  fit: optional(object({ lambdaPlanned: number, errorPlanned: number, error: number })),
});

/** One layer of the compressed model (LayerMix). */
const LAYER_MIX = object({ sources: array(object({ layer: integer, weight: number })), normsFrom: integer });

/** A whole plan (CompressionPlan). */
export const COMPRESSION_PLAN = object({
  method: string, originalLayers: integer, layers: array(LAYER_MIX), steps: array(PLAN_STEP), blendNorms: boolean,
  keepBiases: optional(boolean), details: record(anyJson),
});
