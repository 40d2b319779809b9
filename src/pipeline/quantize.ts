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
  /** More files for the output directory (merge.json of compress --quantize). */
  extraFiles?: Record<string, string>;
  /** What the model card says beyond the quantization: the compression before it, the command line. */
  card?: Pick<ModelCardInfo, 'compression' | 'command' | 'summary' | 'files'>;
  quiet?: boolean;
  log?: (msg: string) => void;
}

/** Dev examples before each MMLU calibration question of a quantizer: the contexts evaluation runs (5-shot). */
export const QUANT_CALIBRATION_SHOTS = 5;

/** Calibration prompt ids for a method that needs them (null otherwise), and what they are. */
export async function quantCalibration(dir: string, q: Quantization, src: CalibrationSource): Promise<{ prompts: number[][] | null; info: Record<string, unknown> }> {
  if (getQuantMethod(q.method).calibration === 'none') return { prompts: null, info: {} };
  const tokenizer = await loadTokenizer(dir);
  const shots = src.calibrationFile ? 0 : src.shots ?? QUANT_CALIBRATION_SHOTS;
  const { ids, perSubject } = calibrationPrompts(tokenizer, { ...src, shots });
  return { prompts: ids, info: { source: src.calibrationFile ?? src.data, subjects: src.subjects ?? null, per_subject: perSubject, shots, seed: src.seed ?? 1 } };
}

/** Quantizes `source` (the model of `opts.model`, or a plan over it) into `opts.out`; returns the report written to quantize.json. */
export async function quantizeSourceTo(source: SyncTensorSource, opts: QuantizeOptions): Promise<QuantizeReport> {
  const log = opts.log ?? (() => {});
  const { prompts, info } = await quantCalibration(opts.model, opts.quantization, opts);
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
    log(`${name}: ${source.config.num_hidden_layers} layers quantized in ${report.seconds.toFixed(1)} s -> ${opts.out} `
      + `(${(written.bytes / 1e6).toFixed(2)} MB of tensors: ${(100 * written.bytes / original).toFixed(1)}% of the original's ${(original / 1e6).toFixed(2)} MB at 16 bits)`);
    return report;
  } finally {
    q.dispose();
  }
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
