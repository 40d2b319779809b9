/**
 * Packed quantized weights in a checkpoint (docs/quantization.md, Format; src/io/packed.ts): a weight
 * `X.weight` [rows, cols] stored as `X.qweight` (I8 for 8-bit symmetric, else U8) [rows, rowBytes],
 * `X.scales` (F16) [rows, groups] and, when asymmetric, `X.mins`. withPackedWeights wraps a checkpoint
 * so that everything reading float weights by their Hugging Face names (exports, merges, fingerprints)
 * gets the dequantized values, one tensor at a time, while the model loader reads them packed.
 */
import type { Checkpoint } from '../io/checkpoint.ts';
import type { LlamaConfig } from './config.ts';
import { expectedTensors } from './config.ts';
import { dequantize, rowBytes, specFromShapes, type PackedInfo, type PackedMatrix } from '../io/packed.ts';
import { UserError } from '../runtime/errors.ts';

/** A checkpoint whose packed weights are known (Checkpoint's optional methods present). */
export type PackedCheckpoint = Checkpoint & Required<Pick<Checkpoint, 'packedInfo' | 'readPacked'>>;

/** The names of weight `name`'s packed parts. */
export function packedNames(name: string): { quants: string; scales: string; mins: string } {
  const base = name.replace(/\.weight$/, '');
  return { quants: `${base}.qweight`, scales: `${base}.scales`, mins: `${base}.mins` };
}

/** The packed form of `name` [rows, cols] in `ckpt`, validated; null when there is none. */
function findPacked(ckpt: Checkpoint, name: string, shape: number[]): PackedInfo | null {
  const n = packedNames(name);
  const q = ckpt.info(n.quants);
  if (!q || !name.endsWith('.weight') || shape.length !== 2) return null;
  const s = ckpt.info(n.scales);
  if (!s) throw new UserError(`${q.file}: "${n.quants}" has no "${n.scales}" beside it; the packed weight is incomplete (re-quantize the model)`);
  if (ckpt.info(name)) throw new UserError(`${q.file}: "${name}" is stored both as floats and packed ("${n.quants}"); keep one (re-quantize the model)`);
  const m = ckpt.info(n.mins);
  if (q.dtype !== 'U8' && q.dtype !== 'I8') throw new UserError(`${q.file}: "${n.quants}" has dtype ${q.dtype}; packed quants are I8 or U8`);
  for (const t of m ? [s, m] : [s]) {
    if (t.dtype !== 'F16' && t.dtype !== 'F32') throw new UserError(`${t.file}: "${t.name}" has dtype ${t.dtype}; scales and mins are F16 (or F32)`);
    if (t.shape.join(',') !== s.shape.join(',')) throw new UserError(`${t.file}: "${t.name}" has shape [${t.shape}], its scales [${s.shape}]`);
  }
  const [rows, cols] = shape;
  const spec = specFromShapes(`${q.file}: "${name}"`, rows, cols, q.shape, q.dtype === 'I8', s.shape, !!m);
  return { spec, rows, cols, quants: n.quants, scales: n.scales, mins: m ? n.mins : null };
}

/** Reads a packed weight's parts (quants as stored, scales and mins widened to float32). */
function readPackedParts(ckpt: Checkpoint, info: PackedInfo): PackedMatrix {
  if (!ckpt.readRaw) throw new Error(`${ckpt.dir}: this checkpoint cannot give packed bytes`);
  const quants = ckpt.readRaw(info.quants).data;
  if (quants.length !== info.rows * rowBytes(info.cols, info.spec.bits)) throw new Error(`${ckpt.dir}: "${info.quants}" has ${quants.length} bytes`);
  return { rows: info.rows, cols: info.cols, spec: info.spec, quants, scales: ckpt.read(info.scales), mins: info.mins ? ckpt.read(info.mins) : null };
}

/**
 * `ckpt` with its packed weights (of the tensors `config` implies) visible under their Hugging Face
 * names: read(X.weight) dequantizes, readRaw(X.weight) is refused (there are no stored float bytes),
 * and packedInfo/readPacked give the packed form. Throws on packed parts that do not fit the config.
 */
export function withPackedWeights(ckpt: Checkpoint, config: LlamaConfig): PackedCheckpoint {
  const packed = new Map<string, PackedInfo>();
  for (const [name, shape] of expectedTensors(config)) {
    const info = findPacked(ckpt, name, shape);
    if (info) packed.set(name, info);
  }
  const parts = new Set([...packed.values()].flatMap((p) => [p.quants, p.scales, ...(p.mins ? [p.mins] : [])]));
  const stray = ckpt.names().find((n) => /\.(qweight|scales|mins)$/.test(n) && !parts.has(n));
  if (stray) throw new UserError(`${ckpt.info(stray)!.file}: "${stray}" belongs to no weight of config.json (a packed tensor without its parts, or of another model)`);
  return {
    ...ckpt,
    read: (name) => {
      const p = packed.get(name);
      return p ? dequantize(readPackedParts(ckpt, p)) : ckpt.read(name);
    },
    readRaw: ckpt.readRaw && ((name) => {
      if (packed.has(name)) throw new Error(`${ckpt.dir}: "${name}" is packed; it has no stored float bytes`);
      return ckpt.readRaw!(name);
    }),
    packedInfo: (name) => packed.get(name) ?? null,
    readPacked: (name) => {
      const p = packed.get(name);
      if (!p) throw new Error(`${ckpt.dir}: "${name}" is not packed`);
      return readPackedParts(ckpt, p);
    },
  };
}
