/**
 * A GGUF model file as a checkpoint of Hugging Face tensors (src/io/checkpoint.ts): names mapped back
 * (blk.0.attn_q.weight → model.layers.0.self_attn.q_proj.weight), shapes in Hugging Face order, Q/K
 * rows put back in Hugging Face's order for the llama architecture, values dequantized to float32 on
 * read. Q8_0/Q4_0 tensors can also be read packed (quants and scales split, nothing requantized).
 */
import type { PackedInfo } from '../io/packed.ts';
import { type Checkpoint, type CheckpointDtype, nonFiniteAllowed } from '../io/checkpoint.ts';
import { checkFinite } from '../io/safetensors.ts';
import { UserError } from '../runtime/errors.ts';
import { flag } from '../runtime/options.ts';
import { ALLOW_NONFINITE } from '../io/options.ts';
import { GGML_BLOCK, GgmlType, READ_TYPES, type ReadType } from './format.ts';
import { hfConfigFromGguf } from './hparams.ts';
import { type PackedBlockType, type PackedParts, dequantize, unpackBlocks } from './quants.ts';
import { GgufFile, withGguf, type GgufTensorInfo } from './reader.ts';
import { ROPE_FREQS, ggufName, hfName, permuteRows, permutedHeads } from './tensor-names.ts';

export interface GgufCheckpoint extends Checkpoint {
  readonly file: GgufFile;
  /** The ggml type of a tensor by Hugging Face name. */
  type(name: string): ReadType;
  /** How a Q8_0/Q4_0/Q4_1 matrix is packed (one group of 32 per block), or null for other tensors. */
  packedInfo(name: string): PackedInfo | null;
  /** A Q8_0/Q4_0/Q4_1 matrix as packed quants, scales and mins (docs/quantization.md, Format), rows in Hugging Face order. */
  readPacked(name: string): PackedParts;
}

const numel = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/** Whether a tensor loads as a packed weight (docs/quantization.md, Format): a matrix of Q8_0, Q4_0 or Q4_1 blocks. */
const isPacked = (t: GgufTensorInfo) => t.dims.length === 2 && (t.type === GgmlType.Q8_0 || t.type === GgmlType.Q4_0 || t.type === GgmlType.Q4_1);

/** The rope_freqs values of a GGUF file, or null when it has none. */
export function readRopeFreqs(g: GgufFile): Float32Array | null {
  const t = g.tensors.get(ROPE_FREQS);
  if (!t) return null;
  if (t.type !== GgmlType.F32 && t.type !== GgmlType.F16) g.refuse(`${ROPE_FREQS} is ${GgmlType[t.type]}, expected F32`);
  return dequantize(t.type, g.readTensor(ROPE_FREQS), numel(t.dims));
}

/** The Hugging Face config.json object of a GGUF model file (parseConfig validates it). */
export function ggufConfigJson(path: string): Record<string, unknown> {
  return withGguf(path, (g) => hfConfigFromGguf(g, readRopeFreqs(g)));
}

/** Opens a GGUF model file as a checkpoint; every tensor must map to a Hugging Face name and be of a type mka reads. */
export function openGgufCheckpoint(path: string): GgufCheckpoint {
  const g = new GgufFile(path);
  try {
    return checkpointOf(g);
  } catch (e) {
    g.close();
    throw e;
  }
}

function checkpointOf(g: GgufFile): GgufCheckpoint {
  const arch = g.string('general.architecture');
  const heads = g.int(`${arch}.attention.head_count`, 0);
  const kvHeads = g.int(`${arch}.attention.head_count_kv`, heads);
  const byHf = new Map<string, GgufTensorInfo>();
  const unsupported: string[] = [];
  for (const t of g.tensors.values()) {
    if (t.name === ROPE_FREQS) continue;
    const hf = hfName(t.name);
    if (hf === null) g.refuse(`tensor "${t.name}" is not one of the ${arch} architecture's tensors that mka knows`);
    if (!(READ_TYPES as readonly number[]).includes(t.type)) unsupported.push(`${t.name} (${GgmlType[t.type]})`);
    byHf.set(hf, t);
  }
  if (unsupported.length) {
    g.refuse(`${unsupported.length} tensor(s) of a type mka does not read, e.g. ${unsupported.slice(0, 2).join(', ')}; mka reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K to Q6_K (convert with llama.cpp's llama-quantize --allow-requantize F.gguf OUT.gguf Q8_0)`);
  }
  const held = new Map<string, Uint8Array>();
  const info = (name: string) => {
    const t = byHf.get(name);
    if (!t) throw new Error(`${g.path}: no tensor "${name}"`);
    return t;
  };
  /** Stored bytes with rows in Hugging Face order. */
  const stored = (name: string): Uint8Array => {
    const t = info(name);
    const bytes = held.get(name) ?? g.readTensor(t.name);
    const perm = permutedHeads(name, arch, heads, kvHeads);
    if (!perm) return bytes;
    const rows = t.dims.length === 1 ? t.dims[0] : numel(t.dims.slice(1));
    if (rows % perm !== 0 || (rows / perm) % 2 !== 0) g.fail(`tensor "${t.name}" has ${rows} rows, which do not split into ${perm} heads of an even size`);
    return permuteRows(bytes, bytes.length / rows, perm, false);
  };
  const typeOf = (name: string) => info(name).type as ReadType;
  const allowNonFinite = nonFiniteAllowed();
  /** Refuses NaN and ±Infinity (a corrupt file: a flipped exponent bit in a value or a block's scale), as safetensors reads do. */
  const finite = (name: string, values: Float32Array): Float32Array => {
    if (allowNonFinite) return values;
    for (let i = 0; i < values.length; i++) {
      if (values[i] - values[i] !== 0) {
        throw new UserError(`${g.path}: tensor "${info(name).name}" holds ${values[i]} at index ${i}; the file is corrupt (re-download or re-convert it), or pass ${flag(ALLOW_NONFINITE)} to use it anyway`);
      }
    }
    return values;
  };
  return {
    dir: g.path,
    file: g,
    configSource: 'its GGUF metadata',
    names: () => [...byHf.keys()],
    info: (name) => {
      const t = byHf.get(name);
      if (!t) return undefined;
      return { name, dtype: GgmlType[t.type] as CheckpointDtype, shape: [...t.dims].reverse(), begin: t.offset, end: t.offset + t.bytes, file: g.path };
    },
    label: (name) => byHf.get(name)?.name ?? ggufName(name) ?? name,
    type: typeOf,
    read: (name) => finite(name, dequantize(typeOf(name), stored(name), numel(info(name).dims))),
    readRaw: (name) => {
      const type = typeOf(name);
      const data = stored(name);
      if (type === GgmlType.F32 || type === GgmlType.F16 || type === GgmlType.BF16) {
        const dtype = GgmlType[type] as 'F32' | 'F16' | 'BF16';
        if (!allowNonFinite) checkFinite(g.path, info(name).name, data, dtype);
        return { dtype, data };
      }
      const values = finite(name, dequantize(type, data, numel(info(name).dims)));
      return { dtype: 'F32', data: new Uint8Array(values.buffer) };
    },
    packedInfo: (name) => {
      const t = byHf.get(name);
      if (!t || !isPacked(t)) return null;
      const base = name.replace(/\.weight$/, '');
      const symmetric = t.type !== GgmlType.Q4_1;
      return {
        spec: { bits: t.type === GgmlType.Q8_0 ? 8 : 4, group: 32, symmetric }, rows: t.dims[1], cols: t.dims[0],
        quants: `${base}.qweight`, scales: `${base}.scales`, mins: symmetric ? null : `${base}.mins`,
      };
    },
    readPacked: (name) => {
      const t = info(name);
      if (!isPacked(t)) throw new Error(`${g.path}: "${t.name}" is ${GgmlType[t.type]}, not a Q8_0/Q4_0/Q4_1 matrix`);
      const p = unpackBlocks(t.type as PackedBlockType, stored(name), t.dims[1], t.dims[0]);
      for (const [what, v] of [['scale', p.scales], ['min', p.mins]] as const) {
        const i = !v || allowNonFinite ? -1 : v.findIndex((x) => x - x !== 0);
        if (i >= 0) throw new UserError(`${g.path}: tensor "${t.name}" has a block ${what} of ${v![i]} (block ${i}); the file is corrupt (re-download or re-convert it), or pass ${flag(ALLOW_NONFINITE)} to use it anyway`);
      }
      return p;
    },
    hold: (name) => {
      const t = info(name);
      if (GGML_BLOCK[t.type].block > 1 && !held.has(name)) held.set(name, g.readTensor(t.name));
    },
    bytesOnDisk: () => g.size,
    close: () => {
      held.clear();
      g.close();
    },
  };
}
