/**
 * Quantizes a model given as a stream of float tensors (a checkpoint, or a merge plan over one) into a
 * stream of packed ones, one decoder layer at a time, as a writer asks for them (weights/hf-writer.ts
 * writes tensors in Hugging Face order, so layer i is quantized when its first tensor is asked for and
 * dropped when the next layer's is). Only one layer's float weights, its results and the calibration
 * prompts' hidden states are held, so a model larger than memory quantizes in the memory of `compress`.
 *
 * The decoder's linears go through the method (methods/); the embedding and lm_head are rounded to
 * nearest in symmetric groups of 32 (ggml's Q8_0/Q4_0 blocks): lm_head at 8 bits (llama.cpp keeps it above
 * the body's type too, Q6_K in its Q4_0 files), the embedding at the quantization's `embeddingBits` (8 by
 * default: GPTQ's and AWQ's reference code leave it unquantized); a tied table takes lm_head's. Norms and
 * biases stay float32.
 */
import { tf } from '../runtime/tf.ts';
import type { SyncTensorSource, TensorSource } from '../weights/source.ts';
import { modelFromParts, type LlamaModel } from '../model/model.ts';
import { type LlamaConfig, type QuantizationConfig, layerTensorShapes, splitLayerName } from '../model/config.ts';
import { allocPacked, dequantizeRows, GroupRangeError, groupOutOfRange, quantizeRtn, type PackedMatrix, type PackedSpec } from '../io/packed.ts';
import { toFloat32 } from '../io/safetensors.ts';
import { UserError } from '../runtime/errors.ts';
import { flag } from '../runtime/options.ts';
import { EMBEDDING_BITS, KEEP_EMBEDDINGS } from './options.ts';
import { progress, type Progress } from '../runtime/progress.ts';
import { collectGarbage } from '../runtime/collect.ts';
import { advanceLayer, calibrationBatches, calibrationTokenCap, CALIBRATION_FORWARD_BYTES, CALIBRATION_MICRO_BATCH, disposeCalibration, embedPrompts, layerWeights, type CalibrationSet } from './calibration.ts';
import { gb } from '../model/memory-estimate.ts';
import { LINEARS, specFor, type LayerResult, type QuantMethod } from './method.ts';
import { getQuantMethod, type Quantization } from './registry.ts';

export interface QuantizeInput {
  /** The float model. */
  source: SyncTensorSource;
  quantization: Quantization;
  /** Calibration prompts (token ids) for methods that need them. */
  prompts?: number[][] | null;
  /** What the prompts are, for quantization_config (data, counts). */
  calibrationInfo?: Record<string, unknown>;
  /** Prompts per calibration micro-batch at most (default 8; calibration.ts calibrationBatches also caps their padded tokens). */
  microBatch?: number;
  /** Bytes one calibration micro-batch's pass through a layer may hold, which caps its padded tokens (default CALIBRATION_FORWARD_BYTES, 1 GiB). */
  forwardBytes?: number;
  /** Keep the embedding and lm_head as floats (as the GPTQ and AWQ papers do) instead of quantizing them as llama.cpp does. */
  keepEmbeddings?: boolean;
  /** The model, as messages name it (its directory; default "the model"). */
  label?: string;
  quiet?: boolean;
  log?: (msg: string) => void;
}

/** What a quantization did, for quantize.json. */
export interface QuantizeReport {
  method: string;
  reference: string;
  grid: { bits: number; group_size: number; sym: boolean };
  params: Record<string, number | boolean>;
  embeddings: Record<string, { bits: number; group_size: number; sym: boolean }>;
  calibration: Record<string, unknown> | null;
  /** Per decoder layer, per projection: the method's figures (GPTQ's loss and layer objective, AWQ's exponent, ...). */
  layers: Record<string, Record<string, number>>[];
  /** What was done other than asked, with counts (prompts cut, dampening raised, inputs that never vary, ...), as the log said once each. */
  notes: Record<string, number>;
  seconds: number;
}

/** A quantized model as a tensor source whose packed tensors the writer stores packed; report() after writing. */
export interface QuantizedSource extends TensorSource {
  report(): QuantizeReport;
  /** Frees what is held (calibration states); call when done, also after an error. */
  dispose(): void;
}

/** Longest calibration prompt, in tokens (longer ones are cut): GPTQ's sequence length. */
export const MAX_CALIBRATION_TOKENS = 2048;

/** The packing of the embedding (at `embeddingBits`) and lm_head (8-bit; a tied table too): symmetric groups of 32. */
export function tableSpecs(config: LlamaConfig, embeddingBits: 4 | 8): Map<string, PackedSpec> {
  const head: PackedSpec = { bits: 8, group: 32, symmetric: true };
  const embed: PackedSpec = { bits: embeddingBits, group: 32, symmetric: true };
  return config.tie_word_embeddings
    ? new Map([['model.embed_tokens.weight', head]])
    : new Map([['model.embed_tokens.weight', embed], ['lm_head.weight', head]]);
}

/** The quantization_config written with a model quantized so. */
function quantizationConfig(method: QuantMethod, q: Quantization, tables: Map<string, PackedSpec>, calibration: Record<string, unknown> | null): QuantizationConfig {
  return {
    quant_method: 'mka', method: method.name, bits: q.grid.bits, group_size: q.grid.group === 'channel' ? -1 : q.grid.group,
    sym: q.grid.symmetric, act_bits: method.actBits ?? null,
    tables: Object.fromEntries([...tables].map(([n, s]) => [n, { bits: s.bits, group_size: s.group, sym: s.symmetric }])),
    params: q.params, ...(calibration ? { calibration } : {}),
  };
}

/** A [rows, cols] float tensor of the source a block of rows at a time, widened from its stored bytes when the source has them. */
function rowBlocks(source: SyncTensorSource, name: string): { rows: number; cols: number; read(r0: number, r1: number): Float32Array } {
  const [rows, cols] = source.shape(name);
  const raw = source.readRaw?.(name) ?? null;
  if (!raw) {
    const all = source.read(name);
    return { rows, cols, read: (r0, r1) => all.subarray(r0 * cols, r1 * cols) };
  }
  const width = raw.dtype === 'F32' ? 4 : 2;
  return {
    rows, cols,
    read: (r0, r1) => toFloat32(Buffer.from(raw.bytes.buffer, raw.bytes.byteOffset + r0 * cols * width, (r1 - r0) * cols * width), raw.dtype),
  };
}

/**
 * Round to nearest of a table, a block of rows at a time (a 128k-row embedding is never widened whole),
 * each block's codes and scales written into the table's own arrays as it is done (the same bytes as
 * rounding it whole; never a second copy of the packed table). What earlier phases dropped is collected
 * first: the table's read and its packed form are the phase's memory, not the last layer's garbage.
 */
function quantizeTable(source: SyncTensorSource, name: string, spec: PackedSpec, label: string): PackedMatrix {
  collectGarbage();
  const t = rowBlocks(source, name);
  const step = Math.max(1, Math.floor((1 << 22) / t.cols));
  const pm = allocPacked(t.rows, t.cols, spec); // table specs are symmetric: no mins
  for (let r0 = 0; r0 < t.rows; r0 += step) {
    const r1 = Math.min(t.rows, r0 + step);
    const rows = t.read(r0, r1);
    checkGroupRange(label, name, rows, r1 - r0, t.cols, spec, r0);
    const part = quantizeRtn(rows, r1 - r0, t.cols, spec);
    pm.quants.set(part.quants, (r0 * pm.quants.length) / t.rows);
    pm.scales.set(part.scales, (r0 * pm.scales.length) / t.rows);
  }
  return pm;
}

/**
 * Throws naming the model and tensor when w (rows `first`.. of `name`) holds a group whose scale is beyond
 * float16's range, where the packed format stores scales: weights that large are a corrupt checkpoint
 * (a flipped exponent bit), which groupParams would refuse without saying where.
 */
function checkGroupRange(label: string, name: string, w: Float32Array, rows: number, cols: number, spec: PackedSpec, first = 0): void {
  const at = groupOutOfRange(w, rows, cols, spec);
  if (at) {
    throw new UserError(`${label}: tensor "${name}" holds ${at.value} at row ${first + at.row}, column ${at.col}, which makes its group's ${spec.bits}-bit scale overflow float16 (the packed format's scales); `
      + 'the checkpoint is corrupt (re-download or re-convert it), or its weights are too large to quantize');
  }
}

/**
 * A decoder layer's float32 weights by suffix, read from the source. A function of its own so that
 * no read's intermediate (a tensor's stored bytes and their widened copy) outlives it in the caller's frame,
 * which V8 keeps while the layer is quantized.
 */
function readLayer(source: SyncTensorSource, layer: number, shapes: ReadonlyMap<string, number[]>): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  for (const suffix of shapes.keys()) weights.set(suffix, Float32Array.from(source.read(`model.layers.${layer}.${suffix}`)));
  return weights;
}

/**
 * The model of `input.source` quantized by `input.quantization`, as a tensor source: tensors come out
 * in the source's order, the decoder layers quantized one after another as they are asked for.
 */
export function quantizedSource(input: QuantizeInput): QuantizedSource {
  const { source, quantization: q } = input;
  const config = source.config;
  const method = getQuantMethod(q.method);
  const log = input.log ?? (() => {});
  const label = input.label ?? 'the model';
  if (method.calibration !== 'none' && (!input.prompts || input.prompts.length === 0)) {
    throw new UserError(`${method.name} needs calibration prompts (MMLU questions or a file of prompts), and none were given`);
  }
  const notes: Record<string, number> = {}; // what the report says; the method's, added up over the layers
  const methodNotes: Record<string, number> = {};
  // GPTQ's sequence length, and never past the model's positions
  const maxTokens = Math.min(MAX_CALIBRATION_TOKENS, config.max_position_embeddings);
  const prompts = method.calibration === 'none' ? null : input.prompts!.map((p) => p.slice(0, maxTokens));
  const cut = prompts ? input.prompts!.filter((p) => p.length > maxTokens).length : 0;
  if (cut > 0) {
    notes[`calibration prompts cut at ${maxTokens} tokens`] = cut;
    log(`calibration: ${cut} of ${prompts!.length} prompts cut at ${maxTokens} tokens`);
  }
  // micro-batches of at most `micro` prompts, and of padded tokens whose pass through a layer fits its budget at this shape
  const micro = input.microBatch ?? CALIBRATION_MICRO_BATCH;
  const forwardBytes = input.forwardBytes ?? CALIBRATION_FORWARD_BYTES;
  const batching = prompts ? calibrationBatches(prompts.map((p) => p.length), config, micro, forwardBytes) : [];
  const capped = batching.slice(0, -1).filter((b) => b.length < micro).length; // the last one is short when the prompts run out
  if (capped > 0) {
    const cap = calibrationTokenCap(config, forwardBytes);
    notes[`calibration micro-batches of fewer than ${micro} prompts, to keep within ${cap} padded tokens`] = capped;
    log(`calibration: ${capped} of ${batching.length} micro-batches hold fewer than ${micro} prompts, to keep within ${cap} padded tokens (a pass through a layer in ${gb(forwardBytes)} at this shape)`);
  }
  const shapes = layerTensorShapes(config);
  const tables = input.keepEmbeddings ? new Map<string, PackedSpec>() : tableSpecs(config, q.embeddingBits);
  if (tables.size > 0) {
    const blocks = [...new Set([...tables.values()].map((s) => `Q${s.bits}_0`))].join('/');
    log(`${[...tables].map(([n, s]) => `${n === 'lm_head.weight' || config.tie_word_embeddings ? 'lm_head' : 'embedding'}${config.tie_word_embeddings ? ' (tied to the embedding)' : ''} ${s.bits}-bit`).join(', ')}, `
      + `symmetric groups of 32 (${blocks} blocks), by round to nearest, not by ${method.name} (${flag(EMBEDDING_BITS)} sets the embedding's bits, ${flag(KEEP_EMBEDDINGS)} keeps both float)`);
  }
  const linears = new Set(LINEARS.map((p) => `${p}.weight`));
  const calibrationInfo = method.calibration === 'none' ? null : { prompts: prompts!.length, tokens: prompts!.reduce((a, p) => a + p.length, 0), ...input.calibrationInfo };
  const qconfig = quantizationConfig(method, q, tables, calibrationInfo);
  const L = config.num_hidden_layers;
  const started = performance.now();

  let calibration: CalibrationSet | null = null; // the prompts' hidden states at the input of layer `done`
  let done = 0; // layers quantized so far
  let current: { layer: number; result: LayerResult } | null = null;
  let embedding: PackedMatrix | null = null; // kept from its write until layer 0's inputs are made
  const stats: Record<string, Record<string, number>>[] = [];
  let bar: Progress | null = null;

  /** Hidden states of the prompts at layer 0's input: the embedding rows, as the quantized model will see them when the method runs on quantized inputs. */
  const firstInputs = (): CalibrationSet => {
    const name = 'model.embed_tokens.weight';
    const H = config.hidden_size;
    if (method.calibration === 'quantized' && tables.has(name)) {
      const table = embedding ?? quantizeTable(source, name, tables.get(name)!, label);
      const row = new Float32Array(H);
      return embedPrompts(prompts!, H, (ids) => {
        const out = new Float32Array(ids.length * H);
        ids.forEach((id, i) => out.set(dequantizeRows(table.quants, table.scales, table.mins, H, table.spec, id, id + 1, row), i * H));
        return out;
      }, batching);
    }
    const t = rowBlocks(source, name);
    return embedPrompts(prompts!, H, (ids) => {
      const out = new Float32Array(ids.length * H);
      ids.forEach((id, i) => out.set(t.read(id, id + 1), i * H));
      return out;
    }, batching);
  };

  const quantizeLayer = async (i: number): Promise<LayerResult> => {
    // what the previous phase dropped (a table's read and packed form: 1.6 GB at Llama-3-8B) is collected before the layer is read
    collectGarbage();
    const weights = readLayer(source, i, shapes);
    if (method.calibration !== 'none' && !calibration) {
      calibration = firstInputs();
      embedding = null;
      // the embedding's bytes, read whole for the prompts' rows (1 GB at Llama-3-8B), are collected before the method's passes
      collectGarbage();
    }
    for (const [suffix, w] of weights) {
      const shape = shapes.get(suffix)!;
      if (linears.has(suffix)) checkGroupRange(label, `model.layers.${i}.${suffix}`, w, shape[0], shape[1], specFor(q.grid, shape[1]));
    }
    let result: LayerResult;
    try {
      result = await method.quantizeLayer({
        config, layer: i, weights, shapes, spec: (suffix) => specFor(q.grid, shapes.get(suffix)![1]),
        calibration, params: q.params, log,
        // the next layer's inputs come from the float layer only for methods calibrated on it
        release: method.calibration === 'float' ? undefined : (suffix) => weights.delete(suffix),
      });
    } catch (e) {
      // a scale the method's own updates (GPTQ's, AWQ's scaling) took out of range: said with the layer
      if (e instanceof GroupRangeError) throw new UserError(`${label}: layer ${i}: ${e.message}`);
      throw e;
    }
    // what the method dropped (AWQ's and SmoothQuant's scaled copy of the layer, 0.9 GB at Llama-3-8B; GPTQ's last Hessian, 1.6 GB)
    // is collected before the next layer's inputs are computed, or a table is read
    collectGarbage();
    if (calibration && i + 1 < L) {
      // the next layer's inputs: through this layer as quantized, or as it was (float)
      const values = method.calibration === 'quantized' ? new Map([...result.floats, ...[...result.packed].map(([s, pm]) => [s, dequantizeAll(pm)] as const)]) : weights;
      const w = layerWeights(values, shapes);
      try {
        advanceLayer(config, calibration, w);
      } finally {
        w.release();
      }
    } else if (calibration) {
      disposeCalibration(calibration);
      calibration = null;
    }
    stats.push(result.stats);
    for (const [what, n] of Object.entries(result.notes ?? {})) methodNotes[what] = (methodNotes[what] ?? 0) + n;
    if (i === L - 1) {
      // said once, after the last layer, with the counts over all of them
      for (const [what, n] of Object.entries(methodNotes)) log(`${method.name}: ${n} ${what}`);
      Object.assign(notes, methodNotes);
    }
    return result;
  };

  /** The result of layer i, quantizing it (and dropping the previous one) on first use. */
  const layerResult = async (i: number): Promise<LayerResult> => {
    if (current?.layer === i) return current.result;
    if (i !== done) throw new Error(`quantizedSource: layer ${i} asked for after layer ${done - 1}; tensors must be read in order`);
    current = null;
    bar ??= progress(`quantize ${method.name}`, L, { unit: 'layers', quiet: input.quiet });
    const result = await quantizeLayer(i);
    current = { layer: i, result };
    done++;
    bar.tick();
    if (done === L) bar.done();
    return result;
  };

  const packedSpecOf = (name: string): PackedSpec | null => {
    const table = tables.get(name);
    if (table) return table;
    const l = splitLayerName(name);
    return l && linears.has(l.suffix) ? specFor(q.grid, shapes.get(l.suffix)![1]) : null;
  };

  return {
    config: { ...config, quantization_config: qconfig },
    names: source.names,
    shape: (name) => source.shape(name),
    packed: packedSpecOf,
    readPacked: async (name) => {
      const table = tables.get(name);
      if (table) {
        current = null; // a table is never inside a layer's tensors: the last layer's result (its packed linears) is not asked for again
        const pm = quantizeTable(source, name, table, label);
        if (name === 'model.embed_tokens.weight' && method.calibration === 'quantized') embedding = pm;
        return pm;
      }
      const l = splitLayerName(name)!;
      return (await layerResult(l.layer)).packed.get(l.suffix)!;
    },
    read: async (name) => {
      const l = splitLayerName(name);
      if (!l) {
        current = null; // past the last layer
        return source.read(name);
      }
      return (await layerResult(l.layer)).floats.get(l.suffix)!;
    },
    readRaw: (name) => (splitLayerName(name) ? null : source.readRaw?.(name) ?? null),
    report: () => ({
      method: method.name, reference: method.reference,
      grid: { bits: q.grid.bits, group_size: q.grid.group === 'channel' ? -1 : q.grid.group, sym: q.grid.symmetric },
      params: q.params,
      embeddings: Object.fromEntries([...tables].map(([n, s]) => [n, { bits: s.bits, group_size: s.group, sym: s.symmetric }])),
      calibration: calibrationInfo, layers: stats, notes, seconds: (performance.now() - started) / 1000,
    }),
    dispose: () => {
      if (calibration) disposeCalibration(calibration);
      calibration = null;
      current = null;
    },
  };
}

/**
 * The quantized model in memory (a sweep point), read from `q` in order as a writer would: packed
 * weights packed, the rest as float32 tensors. Frees q's calibration state when done.
 */
export async function materializeQuantized(q: QuantizedSource): Promise<LlamaModel> {
  const floats = new Map<string, tf.Tensor>();
  const packed = new Map<string, PackedMatrix>();
  try {
    for (const name of q.names) {
      if (q.packed?.(name)) packed.set(name, await q.readPacked!(name));
      else floats.set(name, tf.tensor(await q.read(name), q.shape(name), 'float32'));
    }
    return modelFromParts(q.config, floats, packed);
  } catch (e) {
    for (const t of floats.values()) t.dispose();
    throw e;
  } finally {
    q.dispose();
  }
}

/** A packed matrix's values (one layer's linear at a time). */
function dequantizeAll(pm: PackedMatrix): Float32Array {
  return dequantizeRows(pm.quants, pm.scales, pm.mins, pm.cols, pm.spec, 0, pm.rows, new Float32Array(pm.rows * pm.cols));
}
