/**
 * How much memory a run needs, estimated before the model is loaded, so a run that cannot fit stops
 * at once with one line (the figure, what is available, and the option that would make it fit)
 * instead of dying an hour later in the kernel's OOM killer or with an exhausted wasm heap.
 *
 * The estimate adds up what the layer-major forward pass holds at its peak (src/model/forward.ts):
 *  - resident weights: every tensor, or with --streaming only the embeddings, final norm and lm_head,
 *    stored as float32 or, where the backend keeps them so, in the checkpoint's own 16-bit dtype;
 *  - one streamed decoder layer (when streaming) and the bytes of the tensor being read (its stored
 *    bytes plus a float32 copy);
 *  - activations: the hidden states of every row at a layer boundary (input and output), and inside
 *    a micro-batch the q/k/v/attention outputs, the MLP's three intermediate tensors and the attention
 *    scores and their softmax ([heads, T, S], or one block of them where attention is blocked);
 *  - the KV cache of a cached prefix (MMLU's 5-shot prefix), and the logits asked for;
 *  - the resident weights of other models held at the same time and run one after another (eval
 *    mmlu's --reference-model): their weights add up, the rest is the larger of the two runs';
 *  - a fixed runtime overhead (Node, tfjs, the tokenizer).
 * Everything tfjs holds lives in the wasm heap on the wasm backend, so there the tensor part is also
 * checked against the heap's 4 GiB ceiling. The figures are estimates (±20%), meant to tell a run
 * that fits from one that cannot, not to predict RSS to the megabyte.
 *
 * `MKA_MEMORY_LIMIT` (bytes, or with a K/M/G suffix) replaces the available-memory figure; `off`
 * skips the check.
 */
import { closeSync, existsSync, fstatSync, readSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { join } from 'node:path';
import { type LlamaConfig, expectedTensors, layerTensorShapes, readConfig } from './config.ts';
import { UserError } from '../runtime/errors.ts';
import { openModelDir } from './open.ts';
import { openRegularFile } from '../io/read.ts';
import { readSafetensorsIndex } from '../io/checkpoint.ts';
import { BACKEND_OPTION } from '../runtime/backend-choice.ts';
import { offHeapBackend } from '../runtime/backend.ts';
import { type OptionSpec, flag } from '../runtime/options.ts';
import { backendProfile, currentProfile, WASM_HEAP_LIMIT, type MemoryModel } from '../runtime/profile.ts';
import { isGgufFile, openWeights } from './files.ts';
import { STREAMING } from './options.ts';

/** Where a backend keeps tensors and how it holds weights: the backend profile's memory model. */
export type MemoryProfile = MemoryModel;
export { WASM_HEAP_LIMIT, backendProfile };
/** Node, tfjs, the tokenizer and the data before any model tensor. */
export const RUNTIME_OVERHEAD = 400 * 2 ** 20;

/** Largest attention score block of the decoder's blocked attention, in floats (src/model/ops.ts). */
export const SCORE_BLOCK_FLOATS = 2 ** 24;

/** What a run does with the model. */
export interface Workload {
  /** Read one decoder layer at a time from disk. */
  streaming: boolean;
  /** Rows that go through a layer together (layer-major: all of their hidden states are held). */
  rows: number;
  /** Rows per micro-batch inside a layer. */
  microBatch: number;
  /** Longest row, in tokens. */
  seqLen: number;
  /** Logits computed: none, the last position of each row, or every position. */
  logits: 'none' | 'last' | 'all';
  /** Tokens of a cached prefix the rows attend to (KV cache), 0 when none. */
  cacheTokens?: number;
  /** A forward pass over the cached prefix itself (1 row of cacheTokens) also happens. */
  prefixPass?: boolean;
  /** Whole-batch hidden-state copies [rows, T, H] a per-layer callback makes beside the layer's input and output (calibration: 1). */
  callbackCopies?: number;
  /**
   * Bytes of other rows' hidden states held across a layer-major pass of many forward jobs
   * (forwardMany; a streamed MMLU evaluation holds up to PASS_HIDDEN_BYTES).
   */
  heldBytes?: number;
  /**
   * The option of the run that sets `microBatch` or `rows` (a smaller value needs less memory), and
   * which of the two it sets; none when the run has no such option.
   */
  batch?: { option: Pick<OptionSpec, 'option'>; field: 'microBatch' | 'rows' };
  /** The run can read one layer at a time (it takes --streaming). */
  streamable: boolean;
}

export interface MemoryEstimate {
  /** Bytes by part. */
  parts: { weights: number; reference: number; layer: number; reading: number; activations: number; cache: number; logits: number; runtime: number };
  /** Everything the process holds at its peak. */
  total: number;
  /** What tfjs holds (weights, the reference's, layer, activations, cache, logits): checked against the heap ceiling. */
  tensors: number;
}

const STORED: Record<string, number> = { F32: 4, F16: 2, BF16: 2, float32: 4, float16: 2, bfloat16: 2, Q8_0: 34 / 32, Q4_0: 18 / 32, Q4_1: 20 / 32, Q5_0: 22 / 32, Q5_1: 24 / 32, Q2_K: 84 / 256, Q3_K: 110 / 256, Q4_K: 144 / 256, Q5_K: 176 / 256, Q6_K: 210 / 256 };

/** Tensor names, dtypes and shapes from a safetensors header (empty when the file is unreadable). */
function headerDtypes(file: string): Map<string, { dtype: string; numel: number }> {
  const out = new Map<string, { dtype: string; numel: number }>();
  let fd: number | null = null;
  try {
    fd = openRegularFile(file, 'safetensors file');
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    if (n > 100 * 2 ** 20 || n > fstatSync(fd).size - 8) return out; // the loader refuses it, naming the problem
    const hdr = Buffer.alloc(n);
    readSync(fd, hdr, 0, n, 8);
    for (const [name, v] of Object.entries(JSON.parse(hdr.toString('utf8')) as Record<string, { dtype?: unknown; shape?: unknown }>)) {
      if (name === '__metadata__' || typeof v?.dtype !== 'string') continue;
      const numel = Array.isArray(v.shape) ? v.shape.reduce((a: number, d) => a * Number(d), 1) : 0;
      out.set(name, { dtype: v.dtype, numel });
    }
  } catch (e) {
    if (e instanceof UserError) throw e; // not a regular file: reading it would block or never end
    // the loader reports a broken file with its own message
  } finally {
    if (fd !== null) closeSync(fd);
  }
  return out;
}

/** Bytes per value in memory of the GGUF types that load as packed weights (quants, then float32 scales and mins per block of 32). */
const GGUF_PACKED: Record<string, number> = { Q8_0: 1 + 4 / 32, Q4_0: 0.5 + 4 / 32, Q4_1: 0.5 + 8 / 32 };
const STORED_FLOAT: Record<string, true> = { F32: true, F16: true, BF16: true };

/** Tensor names and storage types of a GGUF model file (empty when it is unreadable). */
function ggufDtypes(file: string): Map<string, string> {
  const out = new Map<string, string>();
  try {
    const ckpt = openWeights(file);
    for (const name of ckpt.names()) out.set(name, ckpt.info(name)!.dtype);
    ckpt.close();
  } catch {
    // the loader reports a broken file with its own message
  }
  return out;
}

/**
 * Bytes per stored value of a tensor (by Hugging Face name); for a packed weight (src/io/packed.ts) the
 * bytes of its quants, scales and mins on disk per value, and `packed` gives what it holds in memory
 * per value (its scales widened to float32), on every backend.
 */
export interface StoredBytes {
  (name: string): number;
  packed?(name: string): number | null;
}

/**
 * Bytes per stored value of each tensor: from the checkpoint's safetensors headers when they are
 * there (only the headers are read), else from config.json's torch_dtype.
 */
export function storedBytes(dir: string, config: LlamaConfig): StoredBytes {
  const fallback = STORED[config.torch_dtype] ?? 4;
  if (isGgufFile(dir)) {
    const types = ggufDtypes(dir);
    const f = ((name: string) => STORED[types.get(name) ?? ''] ?? fallback) as StoredBytes;
    // Q8_0/Q4_0/Q4_1 matrices load packed (quants as stored, scales and mins as float32); a decoder layer's
    // other blocks (k-quants) stay as stored in memory and are dequantized one layer at a time
    f.packed = (name) => {
      const t = types.get(name) ?? '';
      if (t in GGUF_PACKED && /\.weight$/.test(name) && expectedTensors(config).get(name)?.length === 2) return GGUF_PACKED[t];
      return name.startsWith('model.layers.') && !(t in STORED_FLOAT) && t in STORED ? STORED[t] : null;
    };
    return f;
  }
  const files: string[] = [];
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    files.push(...new Set(Object.values(readSafetensorsIndex(index).weight_map))); // checked: a broken index is one line naming it
  } else if (existsSync(join(dir, 'model.safetensors'))) {
    files.push('model.safetensors');
  }
  const byName = new Map<string, number>();
  const headers = new Map<string, { dtype: string; numel: number }>();
  for (const f of files) for (const [name, h] of headerDtypes(join(dir, f))) headers.set(name, h);
  for (const [name, h] of headers) byName.set(name, STORED[h.dtype] ?? fallback);
  const packed = new Map<string, { disk: number; memory: number }>();
  for (const [name, shape] of expectedTensors(config)) {
    const base = name.replace(/\.weight$/, '');
    const q = headers.get(`${base}.qweight`), sc = headers.get(`${base}.scales`), mn = headers.get(`${base}.mins`);
    if (!q || !sc) continue;
    const n = shape.reduce((a, d) => a * d, 1);
    const groups = sc.numel + (mn?.numel ?? 0);
    packed.set(name, { disk: (q.numel + groups * (STORED[sc.dtype] ?? 2)) / n, memory: (q.numel + groups * 4) / n });
  }
  const f = ((name: string) => packed.get(name)?.disk ?? byName.get(name) ?? fallback) as StoredBytes;
  f.packed = (name) => packed.get(name)?.memory ?? null;
  return f;
}

/**
 * Float32 bytes a micro-batch's pass through a decoder layer holds per token, beside its input and
 * output and the attention scores: q, the attention output, k, v, the residual and the norm; the MLP's
 * gate, up and activation.
 */
export function layerTokenBytes(config: LlamaConfig): number {
  const H = config.hidden_size, hd = config.head_dim;
  return 4 * (2 * config.num_attention_heads * hd + 2 * config.num_key_value_heads * hd + 2 * H + 3 * config.intermediate_size);
}

/** Float32 bytes of the attention scores and their softmax of `micro` rows of T tokens over `keys` keys (at most two blocks where attention is blocked). */
export function scoreBytes(config: LlamaConfig, profile: Pick<MemoryProfile, 'blockedAttention'>, micro: number, T: number, keys: number): number {
  const full = 2 * micro * config.num_attention_heads * T * keys;
  return 4 * (profile.blockedAttention ? Math.min(full, 2 * SCORE_BLOCK_FLOATS) : full);
}

/** Estimates the peak memory of running `work` on a model of `config` on a backend of `profile`. */
export function estimateMemory(config: LlamaConfig, stored: StoredBytes, profile: MemoryProfile, work: Workload): MemoryEstimate {
  const numel = (shape: number[]) => shape.reduce((a, d) => a * d, 1);
  const matrix = (name: string) => /_proj\.weight$|^lm_head\.weight$/.test(name) || (config.tie_word_embeddings && name === 'model.embed_tokens.weight');
  // packed weights stay packed on every backend; 16-bit ones where the kernels take them
  const resident = (name: string) => stored.packed?.(name) ?? (profile.bf16Matrices && matrix(name) ? 2 : profile.keeps16Bit ? stored(name) : 4);
  const shapes = expectedTensors(config);
  let weights = 0, largestRead = 0;
  for (const [name, shape] of shapes) {
    const n = numel(shape);
    const packed = stored.packed?.(name) ?? null;
    // a packed weight's bytes become its tensor as read (its scales widened to float32)
    largestRead = Math.max(largestRead, n * (packed !== null ? packed : stored(name) + (profile.keeps16Bit ? 0 : 4)));
    if (!(work.streaming && name.startsWith('model.layers.'))) weights += n * resident(name);
  }
  let layer = 0;
  if (work.streaming) for (const [suffix, shape] of layerTensorShapes(config)) layer += numel(shape) * resident(`model.layers.0.${suffix}`);

  const H = config.hidden_size, hd = config.head_dim;
  const nKV = config.num_key_value_heads, L = config.num_hidden_layers, V = config.vocab_size;
  const S = work.cacheTokens ?? 0;
  /** Float32 bytes one forward pass holds for `rows` rows of T new tokens over S cached ones. */
  const pass = (rows: number, micro: number, T: number, S: number): number => {
    const boundary = 4 * (2 + (work.callbackCopies ?? 0)) * rows * T * H; // a layer's input and output for every row, and a callback's copies
    return boundary + micro * T * layerTokenBytes(config) + scoreBytes(config, profile, micro, T, T + S);
  };
  const micro = Math.max(1, Math.min(work.microBatch, work.rows));
  let activations = pass(work.rows, micro, work.seqLen, S);
  if (work.prefixPass && S > 0) activations = Math.max(activations, pass(1, 1, S, 0));
  activations += work.heldBytes ?? 0;
  const cache = 4 * 2 * L * nKV * hd * (S > 0 ? S * (work.prefixPass ? 2 : 1) : 0);
  const logitRows = work.logits === 'none' ? 0 : work.logits === 'last' ? work.rows : work.rows * work.seqLen;
  const logits = 4 * logitRows * V;
  const reading = largestRead;
  const tensors = weights + layer + activations + cache + logits;
  const parts = { weights, reference: 0, layer, reading, activations, cache, logits, runtime: RUNTIME_OVERHEAD };
  return { parts, total: tensors + reading + RUNTIME_OVERHEAD, tensors };
}

/** A model's shape and stored dtypes, as estimateMemory takes them. */
export interface ModelShape {
  config: LlamaConfig;
  stored: StoredBytes;
}

/**
 * The peak of `work` run on `main` and then on each of `others`, all of them loaded together (eval
 * mmlu with a reference model runs each subject on the model, then on the reference): every model's
 * resident weights (the others' in `parts.reference`), plus the largest of the runs' streamed layer,
 * read buffer, activations, KV cache and logits (one run's are freed before the next starts).
 */
export function estimateMemoryOfModels(main: ModelShape, others: readonly ModelShape[], profile: MemoryProfile, work: Workload): MemoryEstimate {
  const first = estimateMemory(main.config, main.stored, profile, work);
  if (others.length === 0) return first;
  const all = [first, ...others.map((m) => estimateMemory(m.config, m.stored, profile, work))];
  const most = (k: 'layer' | 'reading' | 'activations' | 'cache' | 'logits') => Math.max(...all.map((e) => e.parts[k]));
  const parts = {
    weights: first.parts.weights, reference: all.slice(1).reduce((n, e) => n + e.parts.weights, 0),
    layer: most('layer'), reading: most('reading'), activations: most('activations'), cache: most('cache'), logits: most('logits'), runtime: RUNTIME_OVERHEAD,
  };
  const tensors = parts.weights + parts.reference + parts.layer + parts.activations + parts.cache + parts.logits;
  return { parts, total: tensors + parts.reading + RUNTIME_OVERHEAD, tensors };
}

/** Bytes as "12.3 GB" (10^9, as `free -g` and disk sizes are quoted), or MB / kB / bytes below a tenth of a GB. */
export function gb(bytes: number): string {
  if (bytes >= 1e8) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e5) return `${(bytes / 1e6).toFixed(0)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(0)} kB`;
  return `${Math.round(bytes)} bytes`;
}

/** The memory this process may use: MKA_MEMORY_LIMIT, else the available memory (MemAvailable), capped by a cgroup limit. Null when the check is off. */
export function availableMemory(env: NodeJS.ProcessEnv = process.env): number | null {
  const v = env.MKA_MEMORY_LIMIT?.trim();
  if (v) {
    if (v === 'off') return null;
    const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(v);
    if (!m) throw new UserError(`MKA_MEMORY_LIMIT=${v}: expected bytes with an optional K, M, G or T suffix (e.g. 20G), or off`);
    const bytes = Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' ');
    if (!(bytes >= 1)) throw new UserError(`MKA_MEMORY_LIMIT=${v}: a budget of no memory would refuse every run; give one such as 20G, or off to skip the check`);
    return bytes;
  }
  const constrained = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  const avail = freemem();
  return constrained && constrained < totalmem() ? Math.min(avail, constrained) : avail;
}

/** What a run with a memory check is: the command, its options and how to suggest changes. */
export interface FitRequest {
  /** What runs, for the message ("similarity", "eval mmlu"). */
  command: string;
  config: LlamaConfig;
  stored: StoredBytes;
  profile: MemoryProfile;
  work: Workload;
  /** Other models loaded beside this one and run after it on the same work (a reference model). */
  others?: readonly ModelShape[];
  /** A backend that would keep tensors out of the wasm heap, if any (e.g. cpu), as --backend's value. */
  ramBackend?: { backend: string; profile: MemoryProfile };
  /** Available bytes (default availableMemory()). */
  available?: number | null;
}

/** Why an estimate (its total and its tensors) does not fit, or null when it does. */
export function overflow(e: Pick<MemoryEstimate, 'total' | 'tensors'>, profile: MemoryProfile, available: number): string | null {
  if (profile.heapLimit !== null && e.tensors > profile.heapLimit) return `${gb(e.tensors)} of tensors in the ${profile.backend} heap (limit ${gb(profile.heapLimit)})`;
  if (e.total > available) return `about ${gb(e.total)} of RAM`;
  return null;
}

/** A one-line summary of the parts of an estimate. */
export function describeEstimate(e: MemoryEstimate): string {
  const p = e.parts;
  const items: [string, number][] = [['weights', p.weights], ['reference model', p.reference], ['streamed layer', p.layer], ['activations', p.activations], ['KV cache', p.cache], ['logits', p.logits], ['reading', p.reading]];
  const large = items.filter(([, b]) => b >= 5e7);
  // small runs: the two largest parts, whatever their size, and the runtime's own share
  const shown = large.length ? large : [...items].filter(([, b]) => b > 0).sort((a, b) => b[1] - a[1]).slice(0, 2);
  return [...shown.map(([k, b]) => `${k} ${gb(b)}`), ...(large.length ? [] : [`runtime ${gb(RUNTIME_OVERHEAD)}`])].join(', ');
}

/**
 * Throws a one-line UserError when the run cannot fit, naming the figure, the memory available and
 * the option that would make it fit; returns the estimate otherwise (null when the check is off).
 */
export function assertFits(req: FitRequest): MemoryEstimate | null {
  const available = req.available !== undefined ? req.available : availableMemory();
  const est = (work: Workload, profile = req.profile) => estimateMemoryOfModels(req, req.others ?? [], profile, work);
  const e = est(req.work);
  if (available === null) return e;
  const why = overflow(e, req.profile, available);
  if (!why) return e;
  const fits = (w: Workload, p = req.profile) => overflow(est(w, p), p, available) === null;
  const head = `${req.command} needs ${why} (${describeEstimate(e)}) but ${gb(available)} is available`;
  const tries: { label: string; work: Workload; profile?: MemoryProfile }[] = [];
  const canStream = !req.work.streaming && req.work.streamable;
  const stream = flag(STREAMING);
  if (canStream) tries.push({ label: stream, work: { ...req.work, streaming: true } });
  if (req.ramBackend) {
    const backend = `${flag(BACKEND_OPTION)} ${req.ramBackend.backend}`;
    tries.push({ label: backend, work: req.work, profile: req.ramBackend.profile });
    if (canStream) tries.push({ label: `${stream} ${backend}`, work: { ...req.work, streaming: true }, profile: req.ramBackend.profile });
  }
  for (const t of tries) {
    if (fits(t.work, t.profile)) throw new UserError(`${head}; rerun with ${t.label} (about ${gb(est(t.work, t.profile).total)})`);
  }
  const batch = req.work.batch;
  if (batch) {
    for (let b = Math.floor(req.work[batch.field] / 2); b >= 1; b = Math.floor(b / 2)) {
      for (const t of [{ work: req.work, label: '' }, ...(canStream ? [{ work: { ...req.work, streaming: true }, label: `${stream} ` }] : [])]) {
        const w = { ...t.work, [batch.field]: b };
        if (fits(w)) throw new UserError(`${head}; rerun with ${t.label}${flag(batch.option)} ${b} (about ${gb(est(w).total)})`);
      }
    }
  }
  if (!canStream && !req.work.streaming) throw new UserError(`${head}; use a machine with more memory (this command holds every layer)`);
  // The rows stay unless the batch option sets them (similarity's rows are its calibration prompts).
  const floor = est({ ...req.work, streaming: true, microBatch: 1, rows: batch?.field === 'rows' ? 1 : req.work.rows });
  throw new UserError(`${head}; even streaming one layer at a time with batches of 1 needs about ${gb(floor.total)}: use a machine with more memory`);
}

/**
 * The check every model-loading entry point runs before loading `dir` on the current tfjs backend:
 * throws a one-line UserError when the run cannot fit (see assertFits).
 */
export function checkModelFits(
  command: string, dir: string, work: Workload, opts: { reference?: string } = {},
): MemoryEstimate | null {
  const config = readConfig(dir);
  const shapeOf = (d: string): ModelShape => {
    const c = readConfig(d);
    return { config: c, stored: storedBytes(d, c) };
  };
  const others = opts.reference ? [shapeOf(opts.reference)] : [];
  const profile = currentProfile().memory;
  try {
    return assertFits({
      command, config, stored: storedBytes(dir, config), profile, work, others,
      ramBackend: profile.heapLimit !== null ? offHeapBackend() : undefined,
    });
  } catch (e) {
    // sizes a checkpoint contradicts (config.json's or GGUF metadata's, a corrupt safetensors shape) are a corrupt
    // file, refused naming it, not a model too large for this machine: each checkpoint is checked against its config first
    for (const d of [dir, ...(opts.reference ? [opts.reference] : [])]) if (hasWeights(d)) openModelDir(d).ckpt.close();
    throw e;
  }
}

/** Whether `dir` is a GGUF file or holds safetensors weights (a directory of only a config.json is estimated, not opened). */
function hasWeights(dir: string): boolean {
  return isGgufFile(dir) || existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, 'model.safetensors.index.json'));
}
