/**
 * Export as a TensorFlow.js GraphModel: `model.json` (format graph-model: a TensorFlow GraphDef in
 * JSON, attrs in tfjs-converter's JSON encoding) plus weight shards described by a weightsManifest.
 *
 * The graph is the whole decoder in ops tfjs-converter executes (GatherV2, MatMul, BatchMatMulV2,
 * Square/Mean/Rsqrt, Mul, AddV2, Sigmoid, Softmax, Reshape, Transpose, ConcatV2, SplitV, Slice,
 * StridedSlice, Neg, Range, GreaterEqual, Sub, Less, LogicalAnd, SelectV2, Tile), the same computation
 * as src/model/forward.ts: input `input_ids` int32 [batch, seq] → output `logits` float32
 * [batch, seq, vocab]. Batch and sequence length are dynamic: reshape targets are assembled from
 * Shape(input_ids) at run time, the RoPE cos/sin tables (built for up to `maxSeq` positions, default
 * the model's context) are sliced to the sequence, and the causal (or sliding-window) mask is
 * computed from Range(seq).
 *
 * Longer inputs are not checked by tfjs's kernels: callers keep sequences within
 * `userDefinedMetadata.max_seq`.
 *
 * Every Const node's value comes from the manifest (tfjs maps manifest names to node names); model
 * weights keep their Hugging Face names, so the mapping to the checkpoint is 1:1. Shards are written
 * while tensors are read, one tensor at a time; a weight may continue into the next shard, as in
 * tfjs-converter's own output.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LlamaConfig, layerTensorShapes } from '../model/config.ts';
import { inverseFrequencies, ropeTableData } from '../model/rope.ts';
import { atomicWriteDir } from '../io/atomic.ts';
import { UserError } from '../runtime/errors.ts';
import { type RawTensor, type TensorSource, checkpointSource } from '../weights/source.ts';
import { type DType, toFloat32 } from '../io/safetensors.ts';
import { type QuantScheme, type Quantization, bytesPerValue, quantize } from '../weights/quantize.ts';
import { exportMetadata } from './metadata.ts';
import { mkaVersion } from '../runtime/version.ts';
import { checkOption, flag } from '../runtime/options.ts';
import { MAX_SEQ, TFJS_QUANTIZE, TFJS_SHARD_MB } from './options.ts';

/** A GraphDef node in tfjs-converter's JSON form. */
export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

/** A Const node's value: a model weight (no `data`: read from the source) or data mka computes. */
export interface GraphConst {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data?: Float32Array | Int32Array;
}

export interface DecoderGraph {
  nodes: GraphNode[];
  consts: GraphConst[];
}

const INPUT_NAME = 'input_ids';
const OUTPUT_NAME = 'logits';

const dtypeAttr = (dtype: 'float32' | 'int32' | 'bool') => ({ type: dtype === 'float32' ? 'DT_FLOAT' : dtype === 'int32' ? 'DT_INT32' : 'DT_BOOL' });
const shapeProto = (shape: number[]) => (shape.length ? { dim: shape.map((d) => ({ size: String(d) })) } : {});
const intAttr = (i: number) => ({ i: String(i) });
const boolAttr = (b: boolean) => ({ b });

/** Appends nodes and consts; names ops `${scope}/${Op}_${k}`. */
function graphBuilder() {
  const nodes: GraphNode[] = [];
  const consts: GraphConst[] = [];
  const memo = new Map<string, string>();
  let count = 0;
  let scope = 'mka';
  const addConst = (c: GraphConst): string => {
    const dt = dtypeAttr(c.dtype);
    nodes.push({ name: c.name, op: 'Const', attr: { dtype: dt, value: { tensor: { dtype: dt.type, tensorShape: shapeProto(c.shape) } } } });
    consts.push(c);
    return c.name;
  };
  const memoConst = (key: string, make: () => GraphConst): string => {
    let name = memo.get(key);
    if (!name) {
      name = addConst(make());
      memo.set(key, name);
    }
    return name;
  };
  return {
    nodes,
    consts,
    setScope: (s: string) => {
      scope = s;
    },
    op: (op: string, input: string[], attr: Record<string, unknown> = {}, name?: string): string => {
      const n = name ?? `${scope}/${op}_${count++}`;
      nodes.push({ name: n, op, input, attr });
      return n;
    },
    placeholder: (name: string, dtype: 'int32' | 'float32', shape: number[]): string => {
      nodes.push({ name, op: 'Placeholder', attr: { dtype: dtypeAttr(dtype), shape: { shape: shapeProto(shape) } } });
      return name;
    },
    weight: (name: string, shape: number[]): string => addConst({ name, shape, dtype: 'float32' }),
    data: (name: string, shape: number[], data: Float32Array | Int32Array): string =>
      addConst({ name, shape, dtype: data instanceof Int32Array ? 'int32' : 'float32', data }),
    /** An int32 vector (or scalar when `scalar`), shared by every use. */
    ints: (values: number[], scalar = false): string =>
      memoConst(`i${scalar ? 's' : 'v'}:${values.join(',')}`, () => ({
        name: `mka/const/int_${scalar ? 'scalar_' : ''}${values.join('_').replace(/-/g, 'm')}`,
        shape: scalar ? [] : [values.length],
        dtype: 'int32',
        data: Int32Array.from(values),
      })),
    /** A float32 scalar, shared by every use. */
    float: (value: number, label: string): string =>
      memoConst(`f:${label}:${value}`, () => ({ name: `mka/const/${label}`, shape: [], dtype: 'float32', data: Float32Array.of(value) })),
  };
}

/** Largest RoPE cos/sin tables an export holds (a 131,072-token context at head_dim 128 takes 128 MiB). */
const MAX_ROPE_TABLE_BYTES = 2 ** 30;

/** The decoder of `c` as a GraphDef, for sequences of up to `maxSeq` tokens. */
function buildDecoderGraph(c: LlamaConfig, maxSeq: number, shapeOf: (name: string) => number[]): DecoderGraph {
  const b = graphBuilder();
  const H = c.hidden_size, nH = c.num_attention_heads, nKV = c.num_key_value_heads, hd = c.head_dim, g = nH / nKV;
  const I = b.ints;
  const shapes = new Map<string, string>();
  const W = (name: string): string => {
    let node = shapes.get(name);
    if (!node) {
      node = b.weight(name, shapeOf(name));
      shapes.set(name, node);
    }
    return node;
  };
  const concat = (parts: string[]): string => b.op('ConcatV2', [...parts, I([0], true)], { N: intAttr(parts.length), T: dtypeAttr('int32'), Tidx: dtypeAttr('int32') });
  const reshape = (x: string, shape: string): string => b.op('Reshape', [x, shape], { T: dtypeAttr('float32'), Tshape: dtypeAttr('int32') });
  const transpose = (x: string, perm: number[]): string => b.op('Transpose', [x, I(perm)], { T: dtypeAttr('float32'), Tperm: dtypeAttr('int32') });
  const bin = (op: string, x: string, y: string, dtype: 'float32' | 'int32' = 'float32'): string => b.op(op, [x, y], { T: dtypeAttr(dtype) });
  const un = (op: string, x: string): string => b.op(op, [x], { T: dtypeAttr('float32') });
  const stridedSlice = (x: string, begin: number[], end: number[]): string =>
    b.op('StridedSlice', [x, I(begin), I(end), I(begin.map(() => 1))], {
      T: dtypeAttr('int32'), Index: dtypeAttr('int32'), begin_mask: intAttr(0), end_mask: intAttr(0),
      ellipsis_mask: intAttr(0), new_axis_mask: intAttr(0), shrink_axis_mask: intAttr(0),
    });

  // Input and its run-time sizes.
  b.setScope('input');
  const ids = b.placeholder(INPUT_NAME, 'int32', [-1, -1]);
  const shapeBT = b.op('Shape', [ids], { T: dtypeAttr('int32'), out_type: dtypeAttr('int32') }); // [B, T]
  const vecB = stridedSlice(shapeBT, [0], [1]); // [B]
  const vecT = stridedSlice(shapeBT, [1], [2]); // [T]

  // RoPE tables sliced to the sequence: [T, 1, hd].
  b.setScope('rope');
  const tables = ropeTableData(inverseFrequencies(c), 0, maxSeq);
  const sliceTable = (table: string): string => {
    const rows = b.op('Slice', [table, I([0, 0]), concat([vecT, I([-1])])], { T: dtypeAttr('float32'), Index: dtypeAttr('int32') }); // [T, hd]
    return reshape(rows, I([-1, 1, hd])); // [T, 1, hd]
  };
  const cos = sliceTable(b.data('mka/rope/cos', [maxSeq, hd], tables.cos));
  const sin = sliceTable(b.data('mka/rope/sin', [maxSeq, hd], tables.sin));

  // Additive mask [g*T, T]: query t sees key s when s <= t (and t - s < window).
  b.setScope('mask');
  const pos = b.op('Range', [I([0], true), vecT, I([1], true)], { Tidx: dtypeAttr('int32') }); // [T]
  const qpos = b.op('Reshape', [pos, I([-1, 1])], { T: dtypeAttr('int32'), Tshape: dtypeAttr('int32') }); // [T, 1]
  const kpos = b.op('Reshape', [pos, I([1, -1])], { T: dtypeAttr('int32'), Tshape: dtypeAttr('int32') }); // [1, T]
  let visible = bin('GreaterEqual', qpos, kpos, 'int32'); // [T, T]
  if (c.sliding_window !== null) {
    const inWindow = bin('Less', bin('Sub', qpos, kpos, 'int32'), I([c.sliding_window], true), 'int32');
    visible = b.op('LogicalAnd', [visible, inWindow]);
  }
  let mask = b.op('SelectV2', [visible, b.float(0, 'zero'), b.float(-1e9, 'masked')], { T: dtypeAttr('float32') }); // [T, T]
  if (g > 1) mask = b.op('Tile', [mask, I([g, 1])], { T: dtypeAttr('float32'), Tmultiples: dtypeAttr('int32') }); // [g*T, T]

  const rmsNorm = (x: string, w: string): string => {
    const ms = b.op('Mean', [un('Square', x), I([-1])], { T: dtypeAttr('float32'), Tidx: dtypeAttr('int32'), keep_dims: boolAttr(true) });
    return bin('Mul', bin('Mul', x, un('Rsqrt', bin('AddV2', ms, b.float(c.rms_norm_eps, 'rms_norm_eps')))), w);
  };
  /** x [B, T, in] · W^T (+ bias) → [B, T, out], through [B*T, in] as forward.ts computes it. */
  const linear = (x: string, name: string, hasBias: boolean): string => {
    const [out, inDim] = shapeOf(`${name}.weight`);
    let y = b.op('MatMul', [reshape(x, I([-1, inDim])), W(`${name}.weight`)], {
      T: dtypeAttr('float32'), transpose_a: boolAttr(false), transpose_b: boolAttr(true),
    }); // [B*T, out]
    if (hasBias) y = bin('AddV2', y, W(`${name}.bias`));
    return reshape(y, concat([shapeBT, I([out])])); // [B, T, out]
  };
  const rope = (x: string): string => {
    const split = b.op('SplitV', [x, I([hd / 2, hd / 2]), I([3], true)], { T: dtypeAttr('float32'), Tlen: dtypeAttr('int32'), num_split: intAttr(2) });
    const rotated = b.op('ConcatV2', [un('Neg', `${split}:1`), `${split}:0`, I([3], true)], { N: intAttr(2), T: dtypeAttr('float32'), Tidx: dtypeAttr('int32') });
    return bin('AddV2', bin('Mul', x, cos), bin('Mul', rotated, sin));
  };
  const matmul = (x: string, y: string, adjY: boolean): string =>
    b.op('BatchMatMulV2', [x, y], { T: dtypeAttr('float32'), adj_x: boolAttr(false), adj_y: boolAttr(adjY) });

  b.setScope('embed');
  let x = b.op('GatherV2', [W('model.embed_tokens.weight'), ids, I([0], true)], {
    Tparams: dtypeAttr('float32'), Tindices: dtypeAttr('int32'), Taxis: dtypeAttr('int32'), batch_dims: intAttr(0),
  }); // [B, T, H]
  const layerTensors = layerTensorShapes(c); // which projections have biases (the model-type rules live there)
  const hasBias = (proj: string) => layerTensors.has(`${proj}.bias`);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    b.setScope(`layers.${i}`);
    const xn = rmsNorm(x, W(`${p}input_layernorm.weight`));
    const q = rope(reshape(linear(xn, `${p}self_attn.q_proj`, hasBias('self_attn.q_proj')), concat([shapeBT, I([nH, hd])]))); // [B, T, nH, hd]
    const k = rope(reshape(linear(xn, `${p}self_attn.k_proj`, hasBias('self_attn.k_proj')), concat([shapeBT, I([nKV, hd])]))); // [B, T, nKV, hd]
    const v = reshape(linear(xn, `${p}self_attn.v_proj`, hasBias('self_attn.v_proj')), concat([shapeBT, I([nKV, hd])])); // [B, T, nKV, hd]
    // Query heads kv-major: head kv*g + j uses kv head kv, as HF's repeat_kv does.
    const qg = reshape(transpose(q, [0, 2, 1, 3]), concat([vecB, I([nKV, -1, hd])])); // [B, nKV, g*T, hd]
    const kt = transpose(k, [0, 2, 1, 3]); // [B, nKV, T, hd]
    const vt = transpose(v, [0, 2, 1, 3]); // [B, nKV, T, hd]
    const scores = bin('AddV2', bin('Mul', matmul(qg, kt, true), b.float(1 / Math.sqrt(hd), 'attention_scale')), mask); // [B, nKV, g*T, T]
    const att = matmul(un('Softmax', scores), vt, false); // [B, nKV, g*T, hd]
    const heads = reshape(att, concat([vecB, I([nH]), vecT, I([hd])])); // [B, nH, T, hd]
    const merged = reshape(transpose(heads, [0, 2, 1, 3]), concat([shapeBT, I([nH * hd])])); // [B, T, nH*hd]
    const h1 = bin('AddV2', x, linear(merged, `${p}self_attn.o_proj`, hasBias('self_attn.o_proj')));
    const hn = rmsNorm(h1, W(`${p}post_attention_layernorm.weight`));
    const gate = linear(hn, `${p}mlp.gate_proj`, hasBias('mlp.gate_proj'));
    const up = linear(hn, `${p}mlp.up_proj`, hasBias('mlp.up_proj'));
    const act = bin('Mul', bin('Mul', gate, un('Sigmoid', gate)), up); // SiLU(gate) * up
    x = bin('AddV2', h1, linear(act, `${p}mlp.down_proj`, hasBias('mlp.down_proj')));
  }
  b.setScope('head');
  const normed = rmsNorm(x, W('model.norm.weight'));
  const head = c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const flat = b.op('MatMul', [reshape(normed, I([-1, H])), W(head)], {
    T: dtypeAttr('float32'), transpose_a: boolAttr(false), transpose_b: boolAttr(true),
  }); // [B*T, V]
  b.op('Reshape', [flat, concat([shapeBT, I([c.vocab_size])])], { T: dtypeAttr('float32'), Tshape: dtypeAttr('int32') }, OUTPUT_NAME); // [B, T, V]
  return { nodes: b.nodes, consts: b.consts };
}

/** One entry of a tfjs weightsManifest group. */
export interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  quantization?: Quantization;
}

/** Concatenates weight bytes into fixed-size shard files, flushing each as it fills. */
function shardWriter(dir: string, shardBytes: number, totalBytes: number) {
  const count = Math.max(1, Math.ceil(totalBytes / shardBytes));
  const paths = Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);
  let index = 0, written = 0;
  let buf = new Uint8Array(Math.min(shardBytes, totalBytes));
  let fill = 0;
  const flush = () => {
    writeFileSync(join(dir, paths[index]), buf.subarray(0, fill));
    written += fill;
    index++;
    fill = 0;
    buf = new Uint8Array(Math.min(shardBytes, totalBytes - written));
  };
  return {
    paths,
    append(bytes: Uint8Array) {
      let off = 0;
      while (off < bytes.length) {
        const n = Math.min(bytes.length - off, buf.length - fill);
        buf.set(bytes.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === buf.length && written + fill < totalBytes) flush();
      }
    },
    finish() {
      if (written + fill !== totalBytes) throw new Error(`graph-model shards: wrote ${written + fill} bytes, planned ${totalBytes}`);
      if (fill > 0 || index === 0) flush();
      if (index !== count) throw new Error(`graph-model shards: wrote ${index} shards, planned ${count}`);
    },
  };
}

const STORED_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };
/** Values converted per slice when a stored tensor is re-encoded (4 MiB of float32). */
const SLICE = 2 ** 20;

/**
 * A stored tensor in an element-wise scheme (none: float32, float16), slice by slice: bytes already in
 * the target encoding pass through, others are widened and rounded per slice.
 */
function* encodeSlices(raw: RawTensor, scheme: 'none' | 'float16', name: string): Generator<Uint8Array> {
  if ((scheme === 'none' && raw.dtype === 'F32') || (scheme === 'float16' && raw.dtype === 'F16')) {
    yield raw.bytes;
    return;
  }
  const bpv = STORED_BYTES[raw.dtype];
  const n = raw.bytes.length / bpv;
  for (let i = 0; i < n; i += SLICE) {
    const m = Math.min(SLICE, n - i);
    const f32 = toFloat32(Buffer.from(raw.bytes.buffer, raw.bytes.byteOffset + i * bpv, m * bpv), raw.dtype);
    yield quantize(f32, scheme, name, i).bytes;
  }
}

export interface TfjsExportOptions {
  quantize?: QuantScheme;
  /** Shard size in MiB (default 4, as tfjs-converter). */
  shardMb?: number;
  /** Longest sequence the model accepts (RoPE table rows); default max_position_embeddings. */
  maxSeq?: number;
  /** The model directory the weights come from (recorded in userDefinedMetadata; its merge.json too). */
  sourceDir?: string | null;
  /** More userDefinedMetadata entries. */
  metadata?: Record<string, unknown>;
  log?: (msg: string) => void;
}

export interface TfjsExportResult {
  dir: string;
  files: string[];
  /** Bytes of all weights stored as float32 (the export with --quantize none). */
  float32Bytes: number;
  /** Bytes of the weight shards written. */
  weightBytes: number;
  quantization: QuantScheme;
  maxSeq: number;
}

/** Most weight files an export writes: a smaller --shard-mb is a mistake (a browser fetches each file). */
const MAX_SHARDS = 10_000;

/** Writes `source` as a tfjs GraphModel in `outDir` (atomically), reading one tensor at a time. */
export async function writeGraphModel(source: TensorSource, outDir: string, opts: TfjsExportOptions = {}): Promise<TfjsExportResult> {
  const c = source.config;
  const scheme = opts.quantize ?? TFJS_QUANTIZE.default;
  const shardMb = opts.shardMb ?? TFJS_SHARD_MB.default;
  checkOption(TFJS_SHARD_MB, shardMb);
  const maxSeq = opts.maxSeq ?? c.max_position_embeddings;
  if (!Number.isInteger(maxSeq) || maxSeq < 1 || maxSeq > c.max_position_embeddings) {
    throw new UserError(`${flag(MAX_SEQ)} ${maxSeq}: must be an integer from 1 to the model's max_position_embeddings (${c.max_position_embeddings})`);
  }
  // the cos/sin tables hold maxSeq rows of head_dim floats each: sized before they are built (a 2^31 context would ask for 34 GB)
  const tableBytes = 2 * maxSeq * c.head_dim * 4;
  if (tableBytes > MAX_ROPE_TABLE_BYTES) {
    throw new UserError(`${flag(MAX_SEQ)} ${maxSeq}${opts.maxSeq === undefined ? ' (max_position_embeddings)' : ''}: the RoPE tables for that many positions would take ${(tableBytes / 2 ** 30).toFixed(1)} GiB in the export; give a shorter ${flag(MAX_SEQ)} (at most ${Math.floor(MAX_ROPE_TABLE_BYTES / (8 * c.head_dim))}), the longest input the exported model needs`);
  }
  const graph = buildDecoderGraph(c, maxSeq, (name) => source.shape(name));
  const weightNames = new Set(graph.consts.filter((k) => !k.data).map((k) => k.name));
  const missing = source.names.filter((n) => !weightNames.has(n));
  if (missing.length || weightNames.size !== source.names.length) {
    throw new Error(`writeGraphModel: the source's tensors [${missing.join(', ')}] do not match the decoder graph of its config`);
  }
  // Manifest order: model weights in the source's order, then mka's own constants.
  const byName = new Map(graph.consts.map((k) => [k.name, k]));
  const order = [...source.names.map((n) => byName.get(n)!), ...graph.consts.filter((k) => k.data)];
  const numel = (s: number[]) => s.reduce((a, d) => a * d, 1);
  const storedBytes = (k: GraphConst) => numel(k.shape) * (k.data ? 4 : bytesPerValue(scheme));
  const float32Bytes = order.reduce((a, k) => a + 4 * numel(k.shape), 0);
  const weightBytes = order.reduce((a, k) => a + storedBytes(k), 0);
  const log = opts.log ?? (() => {});
  const shardBytes = Math.max(1, Math.round(shardMb * 2 ** 20));
  const shardCount = Math.ceil(weightBytes / shardBytes);
  if (shardCount > MAX_SHARDS) {
    throw new UserError(`${flag(TFJS_SHARD_MB)} ${shardMb}: would write ${shardCount.toLocaleString('en-US')} weight files for ${(weightBytes / 2 ** 20).toFixed(1)} MiB of weights (at most ${MAX_SHARDS.toLocaleString('en-US')}); use at least ${Math.ceil((100 * weightBytes) / MAX_SHARDS / 2 ** 20) / 100} MiB (tfjs' default is 4)`);
  }

  const weights: ManifestWeight[] = [];
  let files: string[] = [];
  await atomicWriteDir(outDir, async (tmp) => {
    const shards = shardWriter(tmp, shardBytes, weightBytes);
    for (const k of order) {
      if (k.data) {
        shards.append(new Uint8Array(k.data.buffer, k.data.byteOffset, k.data.byteLength));
        weights.push({ name: k.name, shape: k.shape, dtype: k.dtype });
        continue;
      }
      const raw = scheme === 'none' || scheme === 'float16' ? source.readRaw?.(k.name) : null;
      if (raw) {
        // Element-wise schemes: convert the stored bytes a slice at a time, never a float32 copy of the whole tensor.
        if (raw.bytes.length !== numel(k.shape) * STORED_BYTES[raw.dtype]) throw new Error(`writeGraphModel: "${k.name}" has ${raw.bytes.length} bytes, shape [${k.shape}] in ${raw.dtype} needs ${numel(k.shape) * STORED_BYTES[raw.dtype]}`);
        for (const chunk of encodeSlices(raw, scheme as 'none' | 'float16', `${opts.sourceDir ?? 'the model'}: tensor "${k.name}"`)) shards.append(chunk);
        weights.push({ name: k.name, shape: k.shape, dtype: 'float32', ...(scheme === 'float16' ? { quantization: { dtype: 'float16' as const } } : {}) });
        log(`  ${k.name} [${k.shape}]`);
        continue;
      }
      const data = await source.read(k.name);
      if (data.length !== numel(k.shape)) throw new Error(`writeGraphModel: "${k.name}" has ${data.length} values, shape [${k.shape}] needs ${numel(k.shape)}`);
      const q = quantize(data, scheme, `${opts.sourceDir ?? 'the model'}: tensor "${k.name}"`);
      shards.append(q.bytes);
      weights.push({ name: k.name, shape: k.shape, dtype: 'float32', ...(q.quantization ? { quantization: q.quantization } : {}) });
      log(`  ${k.name} [${k.shape}]`);
    }
    shards.finish();
    const version = mkaVersion();
    const modelJson = {
      format: 'graph-model',
      generatedBy: `mka ${version}`,
      convertedBy: `mka ${version}`,
      signature: {
        inputs: { [INPUT_NAME]: { name: `${INPUT_NAME}:0`, dtype: 'DT_INT32', tensorShape: shapeProto([-1, -1]) } },
        outputs: { [OUTPUT_NAME]: { name: `${OUTPUT_NAME}:0`, dtype: 'DT_FLOAT', tensorShape: shapeProto([-1, -1, c.vocab_size]) } },
      },
      modelTopology: { node: graph.nodes, library: {}, versions: { producer: 1 } },
      weightsManifest: [{ paths: shards.paths, weights }],
      userDefinedMetadata: {
        ...exportMetadata(opts.sourceDir ?? null, scheme, { max_seq: maxSeq, architecture: c.architectures[0], num_hidden_layers: c.num_hidden_layers }),
        ...opts.metadata,
      },
    };
    writeFileSync(join(tmp, 'model.json'), JSON.stringify(modelJson));
    files = ['model.json', ...shards.paths];
  }, 'tfjs-model');
  return { dir: outDir, files, float32Bytes, weightBytes, quantization: scheme, maxSeq };
}

/** `mka export tfjs`: the model directory `model` as a tfjs GraphModel in `out`. */
export async function exportTfjs(opts: { model: string; out: string } & TfjsExportOptions): Promise<TfjsExportResult> {
  const source = checkpointSource(opts.model);
  try {
    return await writeGraphModel(source, opts.out, { ...opts, sourceDir: opts.sourceDir ?? opts.model });
  } finally {
    source.close();
  }
}
