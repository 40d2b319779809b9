/**
 * Scoring for the demo trainer: the project's own MMLU evaluator (evaluateMmlu, Hendrycks' 5-shot
 * prompts, prefix cache) on a model in memory, reduced to the numbers the model card reports, and
 * dropLayers, the crude layer-removal check the card tabulates.
 */
import type { LlamaModel } from '../../src/model/model.ts';
import { keepLayers } from '../../src/model/config.ts';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.ts';
import type { MmluData } from '../../src/eval/mmlu/data.ts';
import { evaluateMmlu } from '../../src/eval/mmlu/evaluate.ts';

export interface SubjectScore {
  correct: number;
  total: number;
  accuracy: number;
}

export interface DemoScores {
  /** Correct over all questions (micro average). */
  accuracy: number;
  subjects: Record<string, SubjectScore>;
}

/** k-shot accuracy (default 5) of `model` on `data`, per subject and overall, through evaluateMmlu. */
export async function scoreModel(
  model: LlamaModel, tokenizer: Tokenizer, data: MmluData, opts: { ntrain?: number; limit?: number } = {},
): Promise<DemoScores> {
  const { summary } = await evaluateMmlu({ model, tokenizer, data, ntrain: opts.ntrain ?? 5, limit: opts.limit });
  const subjects: Record<string, SubjectScore> = {};
  for (const s of summary!.subjects) subjects[s.name] = { correct: s.correct, total: s.questions, accuracy: s.accuracy };
  return { accuracy: summary!.overall.accuracy, subjects };
}

/**
 * The model without the decoder layers in `drop` (0-based), the rest renumbered in order: the crude
 * layer-removal check. Shares the tensors of `model`: do not dispose the result.
 */
export function dropLayers(model: LlamaModel, drop: readonly number[]): LlamaModel {
  const L = model.config.num_hidden_layers;
  const keep = Array.from({ length: L }, (_, i) => i).filter((i) => !drop.includes(i));
  if (keep.length === 0 || drop.some((i) => !Number.isInteger(i) || i < 0 || i >= L)) {
    throw new Error(`dropLayers: cannot drop layers [${drop}] of ${L}`);
  }
  if (model.checkpoint) throw new Error('dropLayers: needs a resident model (loaded without streaming)');
  return {
    ...model, config: { ...model.config, num_hidden_layers: keep.length }, tensors: keepLayers(model.tensors, keep),
    packed: model.packed && keepLayers(model.packed, keep), stats: { forwardCalls: 0, layerLoads: 0 },
  };
}
