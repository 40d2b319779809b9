/**
 * The last stage of the compression pipeline: a plan applied to the original checkpoint and written
 * as a Hugging Face model directory with merge.json (compress/plan-file.ts writes and reads it), mergekit.yaml
 * and a model card.
 */
import type { LlamaModel } from '../model/model.ts';
import type { LlamaConfig } from '../model/config.ts';
import { planSource, type CompressionPlan } from '../compress/merge-plan.ts';
import { mergeRecord } from '../compress/plan-file.ts';
import { checkpointSource, modelSource, type SyncTensorSource } from '../weights/source.ts';
import { HF_DTYPES, writeHfModel, type HfDtype } from '../weights/hf-writer.ts';
import { cardName, modelCard, type ModelCardInfo } from '../weights/model-card.ts';
import { mergekitYaml } from '../compress/mergekit.ts';
import { flag } from '../runtime/options.ts';
import { PLAN } from './options.ts';

export interface WriteOptions {
  dtype?: HfDtype;
  /** More fields for merge.json (calibration details, the replayed plan file). */
  extra?: Record<string, unknown>;
  /** What the model card (README.md) says beyond the plan: evaluation results, the command line. */
  card?: Pick<ModelCardInfo, 'evaluation' | 'command'>;
  log?: (m: string) => void;
}

/** The storage dtype of a compressed model: asked for, else the original's torch_dtype when HF has it, else float32. */
export function outputDtype(config: LlamaConfig, dtype?: HfDtype): HfDtype {
  return dtype ?? ((HF_DTYPES as readonly string[]).includes(config.torch_dtype) ? (config.torch_dtype as HfDtype) : 'float32');
}

/**
 * The files written beside the weights of a compressed model: merge.json (the plan, replayable),
 * mergekit.yaml (the plan as a mergekit config, or why it cannot be one) and README.md (its model card).
 */
export function planFiles(dir: string | undefined, plan: CompressionPlan, dtype: HfDtype, out: string, opts: Pick<WriteOptions, 'extra' | 'card'> = {}): Record<string, string> {
  const record = mergeRecord(dir, plan, dtype, opts.extra);
  const removed = plan.originalLayers - plan.layers.length;
  const base = dir ?? null;
  return {
    'merge.json': JSON.stringify(record, null, 2) + '\n',
    'mergekit.yaml': mergekitYaml(plan, dir ?? 'BASE_MODEL', dtype),
    'README.md': modelCard({
      name: cardName(out), baseModel: base, compression: record, ...opts.card,
      summary: `${base ?? 'A model'} with ${removed} of its ${plan.originalLayers} decoder layers removed by \`${plan.method}\`.`,
      files: {
        'merge.json': `the plan: each layer's original layers and weights (mka compress ${flag(PLAN)} replays it)`,
        'mergekit.yaml': 'the plan as a mergekit config (passthrough slices), or why mergekit cannot express it',
      },
    }),
  };
}

/**
 * Writes the compressed model of the original in `dir` (HF layout, tokenizer copied, merge.json),
 * straight from its checkpoint: one tensor at a time, merged tensors computed as they are written,
 * kept tensors copied as stored (16-bit stays 16-bit). Nothing needs to be loaded.
 */
export async function writePlan(dir: string, plan: CompressionPlan, out: string, opts: WriteOptions): Promise<void> {
  const original = checkpointSource(dir);
  try {
    await writeFrom(original, dir, plan, out, opts);
  } finally {
    original.close();
  }
}

/** Writes the compressed model directory (HF layout, tokenizer copied) with merge.json: from the checkpoint when the model has one, else from memory. */
export async function writeCompressed(model: LlamaModel, plan: CompressionPlan, out: string, opts: WriteOptions): Promise<void> {
  if (model.dir) return writePlan(model.dir, plan, out, opts);
  await writeFrom(modelSource(model), undefined, plan, out, opts);
}

/** The plan applied to `original` (of the model directory `dir`, if any), written to `out` with merge.json. */
async function writeFrom(original: SyncTensorSource, dir: string | undefined, plan: CompressionPlan, out: string, opts: WriteOptions): Promise<void> {
  const dtype = outputDtype(original.config, opts.dtype);
  await writeHfModel(planSource(original, plan), out, {
    dtype, copyFrom: dir ?? null, extraFiles: planFiles(dir, plan, dtype, out, opts), log: opts.log,
  });
}
