/**
 * `mka quantize` as a library call: a model directory (or a merge plan over one: `compress
 * --quantize`) quantized by a method of src/quant/ and written as a model directory of packed weights
 * (README "Quantized model directories") with quantize.json, streamed one decoder layer at a time.
 */
import { readConfig } from '../model/config.ts';
import { UserError } from '../runtime/errors.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { checkpointSource, type SyncTensorSource } from '../weights/source.ts';
import { writeHfModel, type HfDtype } from '../weights/hf-writer.ts';
import { getQuantMethod, quantizationName, type Quantization } from '../quant/registry.ts';
import { quantizedSource, type QuantizeReport } from '../quant/quantize.ts';
import { modelBytes } from '../quant/size.ts';
import { calibrationPrompts, type CalibrationSource } from './analyse.ts';
import { cardName, modelCard, type ModelCardInfo } from '../weights/model-card.ts';

export interface QuantizeOptions extends CalibrationSource {
  /** The float model directory (its tokenizer and calibration come from it). */
  model: string;
  out: string;
  quantization: Quantization;
  /** Storage dtype of the tensors left as floats (norms, biases); default float32, they are tiny. */
  dtype?: HfDtype;
  microBatch?: number;
  /** Keep the embedding and lm_head as floats. */
  keepEmbeddings?: boolean;
  /** The merge's calibration (compress --quantize): the quantizer calibrates on its questions. */
  merge?: MergeCalibration | null;
  /** More files for the output directory (merge.json of compress --quantize). */
  extraFiles?: Record<string, string>;
  /** What the model card says beyond the quantization: the compression before it, the command line. */
  card?: Pick<ModelCardInfo, 'compression' | 'command' | 'summary' | 'files'>;
  quiet?: boolean;
  log?: (msg: string) => void;
}

/** Dev examples before each MMLU calibration question of a quantizer: the contexts evaluation runs (5-shot). */
export const QUANT_CALIBRATION_SHOTS = 5;

/**
 * MMLU calibration questions a quantizer draws by default (at least; spread evenly over the subjects):
 * the 128 calibration samples of the GPTQ and AWQ papers. Fewer leave GPTQ's Hessians to a handful of
 * contexts (docs/quantization.md: on the demo, 55 questions are 7,277 tokens of which 1,213 are distinct,
 * the rest the same 5-shot examples again, and GPTQ's answer perplexity moves by ±0.004 between draws).
 */
export const QUANT_CALIBRATION_QUESTIONS = 128;

/** Questions per subject of a quantizer's calibration over `subjects` subjects. */
export function quantPerSubject(subjects: number): number {
  return Math.max(1, Math.ceil(QUANT_CALIBRATION_QUESTIONS / Math.max(1, subjects)));
}

/** The calibration a merge ran on, handed to the quantizer after it (compress --quantize). */
export interface MergeCalibration {
  /** The questions drawn (`subject#index`; empty for a prompt file). */
  labels: string[];
  /** Their token ids as the merge ran them. */
  ids: number[][];
}

/**
 * Calibration prompt ids for a method that needs them (null otherwise), and what they are. With `merge`
 * (compress --quantize), the prompts are the merge's questions, each after its dev examples (`shots`,
 * default 5), or with 0 shots (and for a prompt file) the merge's own token ids, not tokenized again.
 */
export async function quantCalibration(
  dir: string, q: Quantization, src: CalibrationSource, merge?: MergeCalibration | null,
): Promise<{ prompts: number[][] | null; info: Record<string, unknown> }> {
  if (getQuantMethod(q.method).calibration === 'none') return { prompts: null, info: {} };
  const shots = src.calibrationFile ? 0 : src.shots ?? QUANT_CALIBRATION_SHOTS;
  const base = { source: src.calibrationFile ?? src.data, subjects: src.subjects ?? null, shots, seed: src.seed ?? 1 };
  if (merge && merge.ids.length > 0 && (shots === 0 || merge.labels.length === 0)) {
    return { prompts: merge.ids, info: { ...base, questions: merge.labels.length || null, shared_with_merge: 'prompts (the same token ids)' } };
  }
  const tokenizer = await loadTokenizer(dir);
  if (merge && merge.labels.length > 0) {
    const { ids } = calibrationPrompts(tokenizer, { ...src, shots, questions: merge.labels });
    return { prompts: ids, info: { ...base, questions: merge.labels.length, shared_with_merge: `questions (each after ${shots} dev examples)` } };
  }
  const { ids, perSubject } = calibrationPrompts(tokenizer, { ...src, shots, defaultPerSubject: quantPerSubject });
  return { prompts: ids, info: { ...base, per_subject: perSubject } };
}

/** Quantizes `source` (the model of `opts.model`, or a plan over it) into `opts.out`; returns the report written to quantize.json. */
export async function quantizeSourceTo(source: SyncTensorSource, opts: QuantizeOptions): Promise<QuantizeReport> {
  const log = opts.log ?? (() => {});
  const { prompts, info } = await quantCalibration(opts.model, opts.quantization, opts, opts.merge);
  const q = quantizedSource({ source, quantization: opts.quantization, prompts, calibrationInfo: info, microBatch: opts.microBatch, keepEmbeddings: opts.keepEmbeddings, quiet: opts.quiet, log });
  const name = quantizationName(opts.quantization);
  const grid = opts.quantization.grid;
  const card = (): string => {
    const r = q.report();
    return modelCard({
      name: cardName(opts.out), baseModel: opts.model, command: opts.card?.command, compression: opts.card?.compression,
      summary: opts.card?.summary ?? `${opts.model} quantized by \`${name}\`.`,
      quantization: {
        method: opts.quantization.method, bits: grid.bits, group: grid.group === 'channel' ? 'in' : grid.group, symmetric: grid.symmetric,
        details: { reference: r.reference, embedding_and_lm_head: r.embeddings, parameters: r.params, ...(r.calibration ? { calibration: r.calibration } : {}) },
      },
      files: { ...opts.card?.files, 'quantize.json': 'the quantization: method, grid, parameters, calibration and per-linear figures' },
    });
  };
  try {
    const written = await writeHfModel(q, opts.out, {
      dtype: opts.dtype ?? 'float32', copyFrom: opts.model,
      extraFiles: {
        ...opts.extraFiles,
        'quantize.json': () => JSON.stringify({ source_model: opts.model, quantization: name, ...q.report() }, null, 2) + '\n',
        'README.md': card,
      },
    });
    const report = q.report();
    const original = modelBytes(readConfig(opts.model), null);
    log(`${name}: ${source.config.num_hidden_layers} layers quantized in ${report.seconds.toFixed(1)} s, ${tablesSummary(report)} -> ${opts.out} `
      + `(${(written.bytes / 1e6).toFixed(2)} MB of tensors: ${(100 * written.bytes / original).toFixed(1)}% of the original's ${(original / 1e6).toFixed(2)} MB at 16 bits)`);
    return report;
  } finally {
    q.dispose();
  }
}

/** How the embedding and lm_head were stored, for the summary line: "embedding 8-bit, lm_head 8-bit" (or float). */
function tablesSummary(r: QuantizeReport): string {
  const bits = (name: string) => (r.embeddings[name] ? `${r.embeddings[name].bits}-bit` : 'float');
  return Object.keys(r.embeddings).length === 0 ? 'embedding and lm_head float'
    : !r.embeddings['lm_head.weight'] ? `embedding (tied lm_head) ${bits('model.embed_tokens.weight')}`
      : `embedding ${bits('model.embed_tokens.weight')}, lm_head ${bits('lm_head.weight')}`;
}

/** `mka quantize`: the model directory `opts.model` quantized into `opts.out`. */
export async function quantizeModel(opts: QuantizeOptions): Promise<QuantizeReport> {
  const config = readConfig(opts.model); // a bad config fails before the tokenizer or calibration data are read
  const q = config.quantization_config;
  if (q) throw new UserError(`${opts.model}: is already quantized (${q.method} ${q.bits}-bit); quantize its float model instead (rounding rounded weights again only loses accuracy)`);
  const source = checkpointSource(opts.model);
  try {
    return await quantizeSourceTo(source, opts);
  } finally {
    source.close();
  }
}
