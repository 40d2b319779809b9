/**
 * Karpathy's llama2.c checkpoints (float32 `.bin`), read lazily under Hugging Face tensor names, and
 * their conversion to a Hugging Face model directory.
 *
 * Two headers exist. Legacy (v0): 7 int32 `dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len` (a negative vocab_size means a separate classifier), then token embeddings,
 * per-kind layer blocks (rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3), the final norm, two unused
 * RoPE tables of seq_len * head_size / 2 floats, and the classifier if separate. Version 1: a
 * 256-byte header (u32 magic "ak42", int32 version 1, the same 7 int32, u8 shared_classifier, zero
 * padding), then attention norms, ffn norms, final norm, embeddings, wq, wk, wv, wo, w1, w2, w3 (all
 * layers each) and the classifier if separate. Matrices are row-major [out, in], as in HF.
 *
 * llama2.c rotates interleaved pairs (2j, 2j+1) of each head with frequency theta^(-2j/hd); the HF
 * decoder rotates (j, j + hd/2) with the same frequency. Reordering each head's q/k rows to
 * [0, 2, 4, ..., 1, 3, 5, ...] makes the two give identical attention.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync, writeFileSync } from 'node:fs';
import { openRegularFile } from '../io/read.ts';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { configToJson, expectedTensors, parseConfig } from '../model/config.ts';
import { atomicWriteDir } from '../io/atomic.ts';
import { checkFinite, writeSafetensors } from '../io/safetensors.ts';
import { nonFiniteAllowed } from '../io/checkpoint.ts';
import { LLAMA2C_BOS, LLAMA2C_EOS, llama2cTokenizerConfig, llama2cTokenizerJson, readLlama2cTokenizer } from '../tokenizer/llama2c-tokenizer.ts';
import { flag } from '../runtime/options.ts';
import { OUT } from '../io/output-options.ts';
import { CHECKPOINT } from './options.ts';

/** llama2.c's fixed hyperparameters (run.c). */
const LLAMA2C_RMS_EPS = 1e-5;
const LLAMA2C_ROPE_THETA = 10000;
const MAGIC_V1 = 0x616b3432;
const V1_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 28;

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
}

export interface Llama2cCheckpoint {
  path: string;
  version: 0 | 1;
  header: Llama2cHeader;
  headSize: number;
  sharedClassifier: boolean;
  /** HF tensor names and shapes ([out, in]), in file order; no lm_head when the classifier is shared. */
  tensors: Map<string, number[]>;
  /** Reads one tensor by its HF name, q/k rows already reordered for rotate-half RoPE. */
  read(name: string): Float32Array;
}

/**
 * Reorders the rows of a q or k projection ([nHeads * headSize, cols]) from llama2.c's interleaved
 * RoPE pairs to HF's rotate-half pairs: within each head, new row j is old row 2j and new row
 * j + headSize/2 is old row 2j + 1.
 */
export function interleavedToRotateHalf(w: Float32Array, nHeads: number, headSize: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headSize / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      const base = h * headSize;
      out.set(w.subarray((base + 2 * j) * cols, (base + 2 * j + 1) * cols), (base + j) * cols);
      out.set(w.subarray((base + 2 * j + 1) * cols, (base + 2 * j + 2) * cols), (base + half + j) * cols);
    }
  }
  return out;
}

interface Block {
  /** HF name of layer 0's tensor (with `{i}` for the layer), or a global name. */
  name: string;
  shape: number[];
  perLayer: boolean;
}

function readAt(path: string, fd: number, bytes: number, position: number): Buffer {
  const buf = Buffer.alloc(bytes);
  let got = 0;
  while (got < bytes) {
    const n = readSync(fd, buf, got, bytes - got, position + got);
    if (n === 0) break;
    got += n;
  }
  if (got !== bytes) throw new UserError(`${path}: short read (${got} of ${bytes} bytes at byte ${position}); the file changed or is truncated`);
  return buf;
}

/** Opens a llama2.c checkpoint: parses and validates the header and the file size; weights are read on demand. */
export function readLlama2cCheckpoint(path: string): Llama2cCheckpoint {
  const fd = openRegularFile(path, `llama2.c checkpoint (${flag(CHECKPOINT)})`);
  let size: number;
  let head: Buffer;
  try {
    size = statSync(path).size;
    head = readAt(path, fd, Math.min(size, V1_HEADER_BYTES), 0);
  } finally {
    closeSync(fd);
  }
  const notCkpt = (msg: string): never => {
    throw new UserError(`${path}: ${msg}; not a llama2.c checkpoint or truncated`);
  };
  if (head.length < LEGACY_HEADER_BYTES) notCkpt(`only ${size} bytes, shorter than a header`);

  let version: 0 | 1;
  let p: number[];
  let sharedClassifier: boolean;
  let headerBytes: number;
  if (head.readUInt32LE(0) === MAGIC_V1) {
    if (head.length < V1_HEADER_BYTES) notCkpt(`"ak42" header needs ${V1_HEADER_BYTES} bytes, file has ${size}`);
    const v = head.readInt32LE(4);
    if (v !== 1) {
      throw new UserError(`${path}: llama2.c checkpoint version ${v} is not supported; only version 1 (float32) and the legacy format are (re-export it as version 1 with llama2.c's export.py)`);
    }
    version = 1;
    p = Array.from({ length: 7 }, (_, i) => head.readInt32LE(8 + 4 * i));
    sharedClassifier = head[36] !== 0;
    headerBytes = V1_HEADER_BYTES;
  } else {
    version = 0;
    p = Array.from({ length: 7 }, (_, i) => head.readInt32LE(4 * i));
    sharedClassifier = p[5] > 0;
    p[5] = Math.abs(p[5]);
    headerBytes = LEGACY_HEADER_BYTES;
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = p;
  const header: Llama2cHeader = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen };
  const desc = `dim=${dim}, hidden_dim=${hiddenDim}, n_layers=${nLayers}, n_heads=${nHeads}, n_kv_heads=${nKvHeads}, ` +
    `vocab_size=${vocabSize}, seq_len=${seqLen}`;
  if (!p.every((x) => x > 0)) notCkpt(`header has a non-positive size (${desc})`);
  if (dim % nHeads !== 0) notCkpt(`n_heads=${nHeads} does not divide dim=${dim}`);
  if (nHeads % nKvHeads !== 0) notCkpt(`n_kv_heads=${nKvHeads} does not divide n_heads=${nHeads}`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) notCkpt(`head size ${headSize} (dim / n_heads) is odd; RoPE needs it even`);
  const qDim = nHeads * headSize;
  const kvDim = nKvHeads * headSize;

  const L = (suffix: string, shape: number[]): Block => ({ name: `model.layers.{i}.${suffix}`, shape, perLayer: true });
  const G = (name: string, shape: number[]): Block => ({ name, shape, perLayer: false });
  const emb = G('model.embed_tokens.weight', [vocabSize, dim]);
  const attnNorm = L('input_layernorm.weight', [dim]);
  const ffnNorm = L('post_attention_layernorm.weight', [dim]);
  const norm = G('model.norm.weight', [dim]);
  const mats = [
    L('self_attn.q_proj.weight', [qDim, dim]),
    L('self_attn.k_proj.weight', [kvDim, dim]),
    L('self_attn.v_proj.weight', [kvDim, dim]),
    L('self_attn.o_proj.weight', [dim, qDim]),
  ];
  const ffn = [L('mlp.gate_proj.weight', [hiddenDim, dim]), L('mlp.down_proj.weight', [dim, hiddenDim]), L('mlp.up_proj.weight', [hiddenDim, dim])];
  const ropeTable = G('', [seqLen * headSize / 2]); // legacy's unused freq_cis tables
  const blocks: Block[] = version === 0
    ? [emb, attnNorm, ...mats, ffnNorm, ...ffn, norm, ropeTable, ropeTable]
    : [attnNorm, ffnNorm, norm, emb, ...mats, ...ffn];
  if (!sharedClassifier) blocks.push(G('lm_head.weight', [vocabSize, dim]));

  // the size the header implies, checked before anything is built from its counts (a corrupt n_layers must not size a table)
  const expected = blocks.reduce((sum, b) => sum + 4 * b.shape.reduce((a, c) => a * c, 1) * (b.perLayer ? nLayers : 1), headerBytes);
  if (expected !== size) {
    notCkpt(`expected ${expected} bytes for ${desc} with a ${sharedClassifier ? 'shared' : 'separate'} classifier ` +
      `(${version === 0 ? 'legacy' : 'version 1'} header), got ${size}`);
  }
  const where = new Map<string, { offset: number; shape: number[] }>();
  let offset = headerBytes;
  for (const b of blocks) {
    const bytes = 4 * b.shape.reduce((a, c) => a * c, 1);
    for (let i = 0; i < (b.perLayer ? nLayers : 1); i++) {
      if (b.name) where.set(b.name.replace('{i}', String(i)), { offset, shape: b.shape });
      offset += bytes;
    }
  }

  const tensors = new Map<string, number[]>([...where].map(([n, w]) => [n, w.shape]));
  return {
    path, version, header, headSize, sharedClassifier, tensors,
    read(name) {
      const w = where.get(name);
      if (!w) throw new UserError(`${path}: no tensor "${name}" in this llama2.c checkpoint`);
      const numel = w.shape.reduce((a, c) => a * c, 1);
      const fd2 = openSync(path, 'r');
      let buf: Buffer;
      try {
        buf = readAt(path, fd2, 4 * numel, w.offset);
      } finally {
        closeSync(fd2);
      }
      if (!nonFiniteAllowed()) checkFinite(path, name, buf, 'F32');
      const data = new Float32Array(numel);
      new Uint8Array(data.buffer).set(buf);
      if (name.endsWith('q_proj.weight')) return interleavedToRotateHalf(data, nHeads, headSize, dim);
      if (name.endsWith('k_proj.weight')) return interleavedToRotateHalf(data, nKvHeads, headSize, dim);
      return data;
    },
  };
}

/** The HF config.json fields of a llama2.c model (LlamaForCausalLM, float32). */
function llama2cConfigJson(ck: Llama2cCheckpoint): Record<string, unknown> {
  const h = ck.header;
  const raw = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: h.vocabSize,
    hidden_size: h.dim,
    intermediate_size: h.hiddenDim,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHeads,
    num_key_value_heads: h.nKvHeads,
    head_dim: ck.headSize,
    max_position_embeddings: h.seqLen,
    rms_norm_eps: LLAMA2C_RMS_EPS,
    rope_theta: LLAMA2C_ROPE_THETA,
    rope_scaling: null,
    tie_word_embeddings: ck.sharedClassifier,
    attention_bias: false,
    mlp_bias: false,
    hidden_act: 'silu',
    bos_token_id: LLAMA2C_BOS,
    eos_token_id: LLAMA2C_EOS,
    torch_dtype: 'float32',
  };
  return configToJson(parseConfig(raw, `${ck.path} (converted config.json)`));
}

export interface ConvertLlama2cOptions {
  /** llama2.c model .bin */
  checkpoint: string;
  /** llama2.c tokenizer.bin */
  tokenizer: string;
  /** Output directory (replaced atomically if it already holds a model). */
  out: string;
}

/**
 * Converts a llama2.c checkpoint and tokenizer into a Hugging Face model directory: config.json,
 * model.safetensors (F32), tokenizer.json, tokenizer_config.json, generation_config.json.
 * Everything is written to a temporary directory renamed into place at the end.
 */
export async function convertLlama2c(opts: ConvertLlama2cOptions): Promise<void> {
  const ck = readLlama2cCheckpoint(opts.checkpoint);
  const vocab = readLlama2cTokenizer(opts.tokenizer);
  if (vocab.pieces.length !== ck.header.vocabSize) {
    throw new UserError(`${opts.tokenizer}: ${vocab.pieces.length} tokens, but ${opts.checkpoint} has vocab_size ${ck.header.vocabSize}; ` +
      'pass the tokenizer.bin the model was trained with');
  }
  if (existsSync(opts.out)) {
    const st = statSync(opts.out);
    if (!st.isDirectory()) throw new UserError(`${opts.out}: exists and is not a directory; choose another ${flag(OUT)}`);
    if (readdirSync(opts.out).length > 0 && !existsSync(join(opts.out, 'config.json'))) {
      throw new UserError(`${opts.out}: exists and is not a model directory; refusing to replace it (choose another ${flag(OUT)})`);
    }
  }
  const configJson = llama2cConfigJson(ck);
  const config = parseConfig(configJson);
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    const got = ck.tensors.get(name);
    if (!got || got.join() !== shape.join()) throw new Error(`convertLlama2c: tensor ${name} is [${got}] in the checkpoint, config needs [${shape}]`);
  }
  const tokenizerJson = llama2cTokenizerJson(vocab, opts.tokenizer);
  const text = (o: unknown) => JSON.stringify(o, null, 2) + '\n';

  await atomicWriteDir(opts.out, async (dir) => {
    writeFileSync(join(dir, 'config.json'), text(configJson));
    writeFileSync(join(dir, 'generation_config.json'), text({ bos_token_id: LLAMA2C_BOS, eos_token_id: LLAMA2C_EOS }));
    writeFileSync(join(dir, 'tokenizer.json'), text(tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), text(llama2cTokenizerConfig(ck.header.seqLen)));
    await writeSafetensors(
      join(dir, 'model.safetensors'),
      [...expected].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const })),
      (name) => ck.read(name),
    );
  }, 'hf-model');
}
