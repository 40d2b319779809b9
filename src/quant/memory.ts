/**
 * What quantizing a model holds in memory, estimated from its config, its stored dtypes and the
 * calibration prompts' lengths before anything is loaded, and the check `mka quantize`, `compress
 * --quantize` and a sweep's quantized points run before any work: a one-line UserError naming the
 * figure, what is available and the option that would make it fit (as src/model/memory-estimate.ts
 * does for the commands that load a model).
 *
 * quantize.ts streams the model one decoder layer at a time, so the peak is the largest of its phases:
 *  - a table (embedding, lm_head) quantized by round to nearest: its values as the source reads them
 *    (stored bytes from a checkpoint, float32 from a model in memory) and its packed form; with
 *    --keep-embeddings, its stored bytes as they are copied;
 *  - the first decoder layer's calibration inputs made: its float32 weights, the prompts' hidden states and the
 *    embedding they are read from (its stored bytes, read whole; the packed table for methods calibrated on it);
 *  - a decoder layer quantized: its tensors widened to float32 (LayerJob.weights, less what the method
 *    has released by its peak), the calibration prompts' hidden states at its input (right-padded
 *    micro-batches as calibration.ts calibrationBatches forms them, float32, and their masks), and the
 *    method's own peak (QuantMethod.memory, declared beside each method's code, with the largest
 *    micro-batch's pass through the layer) or, when larger, a tensor being read (its float32 values and their copy);
 *  - the next layer's inputs computed (not after the last layer): the layer's float32 weights (for
 *    methods that calibrate on the quantized layers, GPTQ, only its norms: it has released its linears),
 *    the hidden states (each micro-batch's replaced by its output as it is computed), the largest
 *    micro-batch's forward pass, the packed linears and, for GPTQ, their dequantized values; where tensors are copies
 *    (the wasm heap), the layer's tensors once more;
 * plus the runtime's fixed share and what the caller holds meanwhile (a sweep's original model and the
 * quantized model it builds). It counts live bytes: RSS runs higher where freed JavaScript arrays wait
 * for V8's collection (docs/quantization.md compares it with measured peaks).
 */
import { type LlamaConfig, layerTensorShapes } from '../model/config.ts';
import { estimateMemory, gb, availableMemory, overflow, RUNTIME_OVERHEAD, type MemoryProfile, type StoredBytes } from '../model/memory-estimate.ts';
import { offHeapBackend } from '../runtime/backend.ts';
import { packedBytes, type PackedSpec } from '../io/packed.ts';
import { UserError } from '../runtime/errors.ts';
import { flag, type OptionSpec } from '../runtime/options.ts';
import { BACKEND_OPTION } from '../runtime/backend-choice.ts';
import { layerFloatBytes, layerPackedBytes, linearShapes, type LayerMemoryShape } from './method.ts';
import { getQuantMethod, type Quantization } from './registry.ts';
import { MAX_CALIBRATION_TOKENS, tableSpecs } from './quantize.ts';
import { CALIBRATION_MICRO_BATCH, calibrationBatches } from './calibration.ts';

/** Memory a run holds, by what it is. */
export interface HeldBytes {
  what: string;
  bytes: number;
  /** Of which tfjs tensors (what counts against the wasm heap). */
  tensors: number;
}

/** What a quantization run does: the quantization, its calibration prompts and its micro-batches. */
export interface QuantizeWork {
  quantization: Quantization;
  /** Token counts of the calibration prompts (cut as the quantizer cuts them), or null for a method without calibration. */
  prompts: readonly number[] | null;
  /** Prompts per calibration micro-batch at most (default CALIBRATION_MICRO_BATCH, as quantize.ts; their padded tokens are capped too). */
  microBatch?: number;
  /** Bytes one micro-batch's pass may hold, which caps its padded tokens (default CALIBRATION_FORWARD_BYTES, as quantize.ts). */
  forwardBytes?: number;
  keepEmbeddings?: boolean;
}

export interface QuantizeEstimate {
  /** Everything the process holds at its peak. */
  total: number;
  /** What tfjs holds then (checked against the wasm heap's ceiling). */
  tensors: number;
  /** The peak's parts, largest first. */
  parts: HeldBytes[];
}

/** The calibration states as the run pads them (calibration.ts calibrationBatches, embedPrompts). */
export interface PaddedBatches {
  /** Rows and longest prompt of each micro-batch. */
  batches: { rows: number; T: number }[];
  /** Rows × longest prompt, summed over the micro-batches: the states' rows. */
  tokens: number;
  /** Rows × longest prompt of the largest micro-batch. */
  largest: number;
}

/** The micro-batches of prompts of these token counts, as the run makes them, padded. */
export function paddedBatches(config: LlamaConfig, prompts: readonly number[], micro: number, forwardBytes?: number): PaddedBatches {
  const batches = calibrationBatches(prompts, config, micro, forwardBytes).map((b) => ({ rows: b.length, T: Math.max(...b.map((i) => prompts[i])) }));
  return { batches, tokens: batches.reduce((a, b) => a + b.rows * b.T, 0), largest: Math.max(0, ...batches.map((b) => b.rows * b.T)) };
}

/**
 * The peak memory of quantizing a model of `config` (stored as `stored` says: the bytes per value the
 * source reads its tables in) on a backend of `profile`, with `beside` held meanwhile by the caller.
 */
export function estimateQuantize(config: LlamaConfig, stored: StoredBytes, profile: MemoryProfile, work: QuantizeWork, beside: readonly HeldBytes[] = []): QuantizeEstimate {
  const method = getQuantMethod(work.quantization.method);
  const q = work.quantization;
  const micro = work.microBatch ?? CALIBRATION_MICRO_BATCH;
  const H = config.hidden_size;
  const maxTokens = Math.min(MAX_CALIBRATION_TOKENS, config.max_position_embeddings);
  const prompts = method.calibration === 'none' || !work.prompts?.length ? null : work.prompts.map((n) => Math.min(n, maxTokens));
  const copies = profile.heapLimit !== null; // the wasm backend copies arrays into its heap
  const layerF32 = layerFloatBytes(config);
  const packed = layerPackedBytes(config, q.grid);
  const padded: PaddedBatches = prompts ? paddedBatches(config, prompts, micro, work.forwardBytes) : { batches: [], tokens: 0, largest: 0 };
  const { batches, tokens } = padded;
  const states = 4 * tokens * (H + 1); // hidden states and masks
  // the largest micro-batch's pass through the layer (one at a time)
  const forward = Math.max(0, ...batches.map((b) => estimateMemory(config, () => 4, profile, {
    streaming: true, rows: b.rows, microBatch: b.rows, seqLen: b.T, logits: 'none', streamable: false,
  }).parts.activations));
  const shape: LayerMemoryShape = { config, grid: q.grid, params: q.params, tokens, batchRows: padded.largest, forward, copies };
  const own = method.memory(shape);
  const largest = Math.max(...[...layerTensorShapes(config).values()].map((s) => s.reduce((a, d) => a * d, 1)));
  const weights = { what: 'layer weights (float32)', bytes: layerF32, tensors: 0 };
  const input = { what: 'calibration states', bytes: states, tensors: states };
  // a method calibrated on the quantized layers releases each linear's float32 weights once it is done with it (LayerJob.release)
  const kept = (bytes: number) => ({ ...weights, bytes });
  const after = method.calibration === 'quantized' ? kept(layerF32 - linearShapes(config).reduce((a, l) => a + 4 * l.rows * l.cols, 0)) : weights;

  const phases: HeldBytes[][] = [];
  // the tables, one at a time
  const tables = work.keepEmbeddings ? new Map<string, PackedSpec>() : tableSpecs(config, q.embeddingBits);
  for (const name of config.tie_word_embeddings ? ['model.embed_tokens.weight'] : ['model.embed_tokens.weight', 'lm_head.weight']) {
    const [rows, cols] = [config.vocab_size, H];
    const spec = tables.get(name);
    const read = rows * cols * stored(name);
    phases.push(spec
      ? [{ what: `${name.replace(/\.weight$/, '')} read`, bytes: read, tensors: 0 }, { what: `${name.replace(/\.weight$/, '')} packed`, bytes: packedBytes(rows, cols, spec) + 4 * 2 ** 22, tensors: 0 }]
      : [{ what: `${name.replace(/\.weight$/, '')} copied`, bytes: read, tensors: 0 }]);
  }
  // layer 0's calibration inputs beside its float32 weights: the prompts' embedding rows, from the table read whole as stored, or for
  // a method calibrated on the quantized model from the packed table (kept from its write)
  if (prompts) {
    const name = 'model.embed_tokens.weight';
    const spec = method.calibration === 'quantized' ? tables.get(name) : undefined;
    phases.push([weights, input, spec
      ? { what: 'embedding packed', bytes: packedBytes(config.vocab_size, H, spec), tensors: 0 }
      : { what: 'embedding read for the calibration prompts', bytes: config.vocab_size * H * stored(name), tensors: 0 }]);
  }
  // a layer quantized by the method (or read)
  phases.push(own.bytes >= 8 * largest ? [kept(own.weights ?? layerF32), input, own] : [weights, input, { what: 'a tensor read (float32 and its copy)', bytes: 8 * largest, tensors: 0 }]);
  // the next layer's inputs
  if (prompts && config.num_hidden_layers > 1) {
    const values = method.calibration === 'quantized' ? layerF32 : 0;
    phases.push([
      after, input, { what: 'forward pass', bytes: forward, tensors: forward }, { what: 'packed layer', bytes: packed, tensors: 0 },
      ...(values ? [{ what: 'quantized layer (float32)', bytes: values, tensors: 0 }] : []),
      ...(copies ? [{ what: 'layer tensors', bytes: layerF32 + values, tensors: layerF32 + values }] : []),
    ]);
  }
  const sum = (parts: readonly HeldBytes[], k: 'bytes' | 'tensors') => parts.reduce((a, p) => a + p[k], 0);
  const peak = phases.reduce((best, p) => (sum(p, 'bytes') > sum(best, 'bytes') ? p : best));
  const parts = [...peak, ...beside].filter((p) => p.bytes > 0).sort((a, b) => b.bytes - a.bytes);
  return {
    total: RUNTIME_OVERHEAD + sum(parts, 'bytes'),
    tensors: Math.max(...phases.map((p) => sum(p, 'tensors'))) + sum(beside, 'tensors'),
    parts,
  };
}

/** A quantization run with a memory check: what runs, on what, and what its command can change. */
export interface QuantizeFitRequest {
  /** What runs, for the message ("quantize", "compress", "sweep"). */
  command: string;
  config: LlamaConfig;
  stored: StoredBytes;
  profile: MemoryProfile;
  work: QuantizeWork;
  beside?: readonly HeldBytes[];
  /** The option that sets the calibration questions per MMLU subject, and the count in use (a suggestion halves it). */
  perSubject?: { option: Pick<OptionSpec, 'option'>; value: number } | null;
  /** The option that sets the calibration micro-batch, when the command has one. */
  microBatch?: Pick<OptionSpec, 'option'> | null;
  /** Available bytes (default availableMemory()). */
  available?: number | null;
}

/** The parts of an estimate worth naming (50 MB and more; at least the largest), with their sizes. */
export function describeQuantizeEstimate(e: QuantizeEstimate): string {
  const shown = e.parts.filter((p, i) => i === 0 || p.bytes >= 5e7);
  return shown.map((p) => `${p.what} ${gb(p.bytes)}`).join(', ');
}

/**
 * Throws a one-line UserError when quantizing cannot fit, naming the figure, the memory available and
 * what would make it fit (a backend outside the wasm heap, smaller micro-batches, fewer calibration
 * questions, or more memory); returns the estimate otherwise (null when the check is off).
 */
export function assertQuantizeFits(req: QuantizeFitRequest): QuantizeEstimate | null {
  const available = req.available !== undefined ? req.available : availableMemory();
  const est = (work: QuantizeWork, profile = req.profile) => estimateQuantize(req.config, req.stored, profile, work, req.beside);
  const e = est(req.work);
  if (available === null) return e;
  const overflowing = (x: QuantizeEstimate, p: MemoryProfile) => overflow(x, p, available);
  const why = overflowing(e, req.profile);
  if (!why) return e;
  const head = `${req.command} needs ${why} (${describeQuantizeEstimate(e)}) but ${gb(available)} is available`;
  if (req.profile.heapLimit !== null) {
    const { backend: ram, profile: p } = offHeapBackend();
    if (!overflowing(est(req.work, p), p)) throw new UserError(`${head}; rerun with ${flag(BACKEND_OPTION)} ${ram} (about ${gb(est(req.work, p).total)})`);
  }
  const prompts = req.work.prompts;
  // smaller micro-batches first: they keep every calibration prompt (the same sums, in more passes)
  if (prompts && req.microBatch) {
    for (let m = Math.floor((req.work.microBatch ?? CALIBRATION_MICRO_BATCH) / 2); m >= 1; m = Math.floor(m / 2)) {
      const w = { ...req.work, microBatch: m };
      if (!overflowing(est(w), req.profile)) throw new UserError(`${head}; rerun with ${flag(req.microBatch)} ${m} (about ${gb(est(w).total)})`);
    }
  }
  const per = req.perSubject?.value ?? 0;
  if (prompts && req.perSubject && per > 1) {
    // the prompts come subject by subject, `per` of each: keep k of each subject's
    for (let k = Math.floor(per / 2); k >= 1; k = Math.floor(k / 2)) {
      const w = { ...req.work, prompts: prompts.filter((_, i) => i % per < k) };
      if (!overflowing(est(w), req.profile)) throw new UserError(`${head}; rerun with ${flag(req.perSubject.option)} ${k} (about ${gb(est(w).total)})`);
    }
  }
  throw new UserError(`${head}; use a machine with more memory (the model is already quantized one layer at a time)`);
}
