/**
 * `mka quantize` as a library call: a model directory (or a merge plan over one: `compress
 * --quantize`) quantized by a method of src/quant/ and written as a model directory of packed weights
 * (README "Quantized model directories") with quantize.json, streamed one decoder layer at a time.
 */
import { tf } from '../runtime/tf.ts';
import { readConfig, type LlamaConfig } from '../model/config.ts';
import { modelFromParts, type LlamaModel } from '../model/model.ts';
import { gb, storedBytes } from '../model/memory-estimate.ts';
import { currentProfile } from '../runtime/profile.ts';
import type { PackedMatrix } from '../io/packed.ts';
import { UserError } from '../runtime/errors.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { checkpointSource, type SyncTensorSource } from '../weights/source.ts';
import { writeHfModel, type HfDtype } from '../weights/hf-writer.ts';
import { getQuantMethod, quantizationName, type Quantization } from '../quant/registry.ts';
import { quantizedSource, type QuantizedSource, type QuantizeReport } from '../quant/quantize.ts';
import { assertQuantizeFits, describeQuantizeEstimate, type HeldBytes, type QuantizeEstimate } from '../quant/memory.ts';
import { MICRO_BATCH, PER_SUBJECT } from '../compress/options.ts';
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
  /** What runs, for the memory check's message (default "quantize"). */
  command?: string;
  /** The calibration prompts when the caller has drawn them (and checked the memory with them): compress --quantize. */
  calibration?: QuantCalibration;
  /** Also return the quantized model in memory, as written (a sweep's kept point: one quantization for both). */
  materialize?: boolean;
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

/** A quantizer's calibration prompts (null for a method without calibration) and what they are, for quantize.json. */
export interface QuantCalibration {
  prompts: number[][] | null;
  info: Record<string, unknown>;
}

/**
 * Calibration prompt ids for a method that needs them (null otherwise), and what they are. With `merge`
 * (compress --quantize), the prompts are the merge's questions, each after its dev examples (`shots`,
 * default 5), or with 0 shots (and for a prompt file) the merge's own token ids, not tokenized again.
 */
export async function quantCalibration(
  dir: string, q: Quantization, src: CalibrationSource, merge?: MergeCalibration | null,
): Promise<QuantCalibration> {
  if (getQuantMethod(q.method).calibration === 'none') return { prompts: null, info: {} };
  const shots = src.calibrationFile ? 0 : src.shots ?? QUANT_CALIBRATION_SHOTS;
  const base = { source: src.calibrationFile ?? src.data, subjects: src.subjects ?? null, shots, seed: src.seed ?? 1 };
  if (merge && merge.ids.length > 0 && (shots === 0 || merge.labels.length === 0)) {
    return { prompts: merge.ids, info: { ...base, questions: merge.labels.length || null, shared_with_merge: 'prompts (the same token ids)' } };
  }
  const tokenizer = await loadTokenizer(dir);
  const maxTokens = readConfig(dir).max_position_embeddings;
  if (merge && merge.labels.length > 0) {
    const { ids } = calibrationPrompts(tokenizer, { ...src, shots, questions: merge.labels }, maxTokens);
    return { prompts: ids, info: { ...base, questions: merge.labels.length, shared_with_merge: `questions (each after ${shots} dev examples)` } };
  }
  const { ids, perSubject } = calibrationPrompts(tokenizer, { ...src, shots, defaultPerSubject: quantPerSubject }, maxTokens);
  return { prompts: ids, info: { ...base, per_subject: perSubject } };
}

/**
 * The memory check of quantizing `config` (the model of `dir`, or a plan over it) with these prompts:
 * a one-line UserError before any work when it cannot fit (src/quant/memory.ts); returns the estimate.
 */
export function checkQuantizeFits(
  command: string, dir: string, config: LlamaConfig, q: Quantization, cal: QuantCalibration,
  opts: { microBatch?: number; keepEmbeddings?: boolean; perSubject?: number; microBatchOption?: boolean; beside?: readonly HeldBytes[]; readsFloat32?: boolean },
): QuantizeEstimate | null {
  const stored = storedBytes(dir, config);
  const perSubject = typeof cal.info.per_subject === 'number' ? cal.info.per_subject : opts.perSubject;
  return assertQuantizeFits({
    command, config, stored: opts.readsFloat32 ? () => 4 : stored, profile: currentProfile().memory,
    work: { quantization: q, prompts: cal.prompts?.map((p) => p.length) ?? null, microBatch: opts.microBatch, keepEmbeddings: opts.keepEmbeddings },
    beside: opts.beside, perSubject: perSubject ? { option: PER_SUBJECT, value: perSubject } : null, microBatch: opts.microBatchOption ? MICRO_BATCH : null,
  });
}

/**
 * Quantizes `source` (the model of `opts.model`, or a plan over it) into `opts.out`; returns the report
 * written to quantize.json, and with `materialize` the model as written, in memory (dispose it).
 */
export async function quantizeSourceTo(source: SyncTensorSource, opts: QuantizeOptions): Promise<QuantizeReport & { model?: LlamaModel }> {
  const log = opts.log ?? (() => {});
  const cal = opts.calibration ?? await quantCalibration(opts.model, opts.quantization, opts, opts.merge);
  if (!opts.calibration) {
    checkQuantizeFits(opts.command ?? 'quantize', opts.model, source.config, opts.quantization, cal, {
      microBatch: opts.microBatch, keepEmbeddings: opts.keepEmbeddings, perSubject: opts.perSubject, microBatchOption: true, readsFloat32: !source.readRaw,
    });
  }
  const { prompts, info } = cal;
  const made = quantizedSource({ source, quantization: opts.quantization, prompts, calibrationInfo: info, microBatch: opts.microBatch, keepEmbeddings: opts.keepEmbeddings, label: opts.model, quiet: opts.quiet, log });
  const kept = opts.materialize ? keeping(made) : null;
  const q = kept?.source ?? made;
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
    return kept ? { ...report, model: kept.model() } : report;
  } finally {
    kept?.dispose();
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

/**
 * `q` as a source that also keeps every tensor the writer reads from it (packed ones packed, the rest as
 * float32 tensors, as materializeQuantized builds them), so the model written and the model returned are
 * the same tensors; model() builds it once the writer is done, dispose() frees what was not handed over.
 */
function keeping(q: QuantizedSource): { source: QuantizedSource; model(): LlamaModel; dispose(): void } {
  const floats = new Map<string, tf.Tensor>();
  const packed = new Map<string, PackedMatrix>();
  let handed = false;
  return {
    source: {
      ...q,
      readRaw: undefined, // every float tensor through read(), as the model in memory holds it
      readPacked: async (name) => {
        const pm = await q.readPacked!(name);
        packed.set(name, pm);
        return pm;
      },
      read: async (name) => {
        const v = await q.read(name);
        floats.set(name, tf.tensor(Float32Array.from(v), q.shape(name), 'float32'));
        return v;
      },
    },
    model: () => {
      handed = true;
      return modelFromParts(q.config, floats, packed);
    },
    dispose: () => {
      if (!handed) for (const t of floats.values()) t.dispose();
    },
  };
}

/** `mka quantize`: the model directory `opts.model` quantized into `opts.out`. */
export async function quantizeModel(opts: QuantizeOptions): Promise<QuantizeReport> {
  const config = readConfig(opts.model); // a bad config fails before the tokenizer or calibration data are read
  const q = config.quantization_config;
  if (q) throw new UserError(`${opts.model}: is already quantized (${q.method} ${q.bits}-bit); quantize its float model instead (rounding rounded weights again only loses accuracy)`);
  // the calibration drawn and the memory checked before the checkpoint is opened
  const calibration = opts.calibration ?? await quantCalibration(opts.model, opts.quantization, opts);
  const estimate = checkQuantizeFits(opts.command ?? 'quantize', opts.model, config, opts.quantization, calibration, {
    microBatch: opts.microBatch, keepEmbeddings: opts.keepEmbeddings, perSubject: opts.perSubject, microBatchOption: true,
  });
  if (estimate) opts.log?.(`memory: an estimated ${gb(estimate.total)} at the peak (${describeQuantizeEstimate(estimate)})`);
  const source = checkpointSource(opts.model);
  try {
    return await quantizeSourceTo(source, { ...opts, calibration });
  } finally {
    source.close();
  }
}
