/**
 * A Hugging Face checkpoint writer: config.json (with the model's own num_hidden_layers),
 * model.safetensors or shards `model-0000i-of-0000N.safetensors` with model.safetensors.index.json,
 * generation_config.json when present, and the tokenizer files. Tensors are read from the source one
 * at a time while the shards are written, so a model larger than memory exports too. `mka export hf`
 * and the compressor write their output with it.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readRegularFile } from '../io/read.ts';
import { dirname, join } from 'node:path';
import { type LlamaConfig, configToJson, expectedTensors } from '../model/config.ts';
import { atomicWriteDir } from '../io/atomic.ts';
import { DTYPE_MAX, type DType, type StoredDType, toFloat32, writeSafetensors } from '../io/safetensors.ts';
import { groupCount, packedDiskBytes, rowBytes, type PackedMatrix, type PackedSpec } from '../io/packed.ts';
import { fromFloat32 } from '../io/safetensors.ts';
import { packedNames } from '../model/packed-checkpoint.ts';
import { UserError } from '../runtime/errors.ts';
import type { TensorSource } from './source.ts';
import { isGgufFile } from '../model/files.ts';
import { ggufTokenizerFiles } from '../tokenizer/gguf.ts';
import { chatTemplateFiles } from '../tokenizer/config.ts';
import { checkOption, flag } from '../runtime/options.ts';
import { HF_DTYPE, HF_DTYPES, HF_SHARD_MB, type HfDtype } from './options.ts';

export { HF_DTYPES, type HfDtype };
const STORAGE: Record<HfDtype, DType> = { bfloat16: 'BF16', float16: 'F16', float32: 'F32' };
const BYTES: Record<HfDtype, number> = { bfloat16: 2, float16: 2, float32: 4 };

/** Files copied from the source model directory when present (and its chat template files, tokenizer/config.ts). */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model'];
const COPIED_FILES = [...TOKENIZER_FILES, 'generation_config.json'];

export interface HfWriteOptions {
  dtype: HfDtype;
  /** Largest shard in MB (10^6 bytes, as transformers counts); default 5000. */
  shardMb?: number;
  /** Directory whose tokenizer files and generation_config.json are copied (a GGUF file: its vocabulary as tokenizer files). */
  copyFrom?: string | null;
  /** More files to write: name → text (a function is called after the tensors are written). */
  extraFiles?: Record<string, string | (() => string)>;
  /** The model written, as messages name it (default: copyFrom, else "the model"). */
  label?: string;
  log?: (msg: string) => void;
}

export interface HfExportResult {
  dir: string;
  files: string[];
  /** Bytes of tensor data written. */
  bytes: number;
  dtype: HfDtype;
}

/** Groups tensors into shards of at most `limit` bytes, in order (a larger tensor gets its own shard). */
function planShards(names: string[], bytesOf: (name: string) => number, limit: number): string[][] {
  const shards: string[][] = [];
  let size = 0;
  for (const name of names) {
    const b = bytesOf(name);
    if (!shards.length || (size + b > limit && size > 0)) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(name);
    size += b;
  }
  return shards;
}

/** A tensor as written: a float tensor under its own name, or a packed one as its parts. */
interface Written {
  name: string;
  spec: PackedSpec | null;
  parts: { name: string; shape: number[]; dtype: StoredDType }[];
}

/** The file entries of tensor `name` [rows, cols]: itself in `dtype`, or packed as qweight, scales (and mins). */
function writtenTensor(name: string, shape: number[], spec: PackedSpec | null, dtype: DType): Written {
  if (!spec) return { name, spec, parts: [{ name, shape, dtype }] };
  const [rows, cols] = shape;
  const n = packedNames(name);
  const groups = [rows, groupCount(cols, spec.group)];
  const parts: Written['parts'] = [
    { name: n.quants, shape: [rows, rowBytes(cols, spec.bits)], dtype: spec.bits === 8 && spec.symmetric ? 'I8' : 'U8' },
    { name: n.scales, shape: groups, dtype: 'F16' },
  ];
  if (!spec.symmetric) parts.push({ name: n.mins, shape: groups, dtype: 'F16' });
  return { name, spec, parts };
}

/** The bytes of one part of a packed matrix as stored: quants as they are, scales and mins as F16 (exact: they are f16 values). */
function packedPart(pm: PackedMatrix, part: number): Uint8Array {
  if (part === 0) return pm.quants;
  const values = part === 1 ? pm.scales : pm.mins!;
  return fromFloat32(values, 'F16');
}

/**
 * Writes `source` as a Hugging Face model directory `outDir` (atomically: the directory appears
 * only when complete). Tensors are read in `source.names` order, one at a time. Tensors the source
 * packs (source.packed) are written as their packed parts, and config.json then carries the source's
 * quantization_config; otherwise it carries none (every weight is written as floats).
 */
export async function writeHfModel(source: TensorSource, outDir: string, opts: HfWriteOptions): Promise<HfExportResult> {
  checkOption(HF_DTYPE, opts.dtype);
  const shardMb = opts.shardMb ?? HF_SHARD_MB.default;
  checkOption(HF_SHARD_MB, shardMb);
  const specs = new Map(source.names.map((name) => [name, source.packed?.(name) ?? null]));
  const anyPacked = [...specs.values()].some((s) => s !== null);
  if (anyPacked && (!source.config.quantization_config || !source.readPacked)) throw new Error('writeHfModel: packed tensors need the source\'s quantization_config and readPacked');
  const config: LlamaConfig = { ...source.config, torch_dtype: opts.dtype, quantization_config: anyPacked ? source.config.quantization_config : null };
  const expected = expectedTensors(config);
  for (const name of source.names) {
    const want = expected.get(name);
    if (!want) throw new Error(`writeHfModel: tensor "${name}" does not belong to a ${config.num_hidden_layers}-layer model of this config`);
    if (want.join(',') !== source.shape(name).join(',')) throw new Error(`writeHfModel: "${name}" has shape [${source.shape(name)}], the config implies [${want}]`);
  }
  const absent = [...expected.keys()].filter((n) => !source.names.includes(n));
  if (absent.length) throw new Error(`writeHfModel: the source lacks ${absent.join(', ')}`);

  const numel = (name: string) => source.shape(name).reduce((a, d) => a * d, 1);
  const bytesOf = (name: string) => {
    const spec = specs.get(name);
    return spec ? packedDiskBytes(source.shape(name)[0], source.shape(name)[1], spec) : numel(name) * BYTES[opts.dtype];
  };
  const shards = planShards(source.names, bytesOf, shardMb * 1e6);
  const n = shards.length;
  const fileOf = (i: number) => (n === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  const log = opts.log ?? (() => {});
  const files: string[] = [];
  let bytes = 0;
  await atomicWriteDir(outDir, async (tmp) => {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(configToJson(config), null, 2) + '\n');
    files.push('config.json');
    const weightMap: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      const written = shards[i].map((name) => writtenTensor(name, source.shape(name), specs.get(name)!, STORAGE[opts.dtype]));
      const partOf = new Map(written.flatMap((w) => w.parts.map((p, j) => [p.name, { w, j }] as const)));
      let current: { name: string; pm: PackedMatrix } | null = null; // the packed tensor whose parts are being written
      await writeSafetensors(join(tmp, fileOf(i)), written.flatMap((w) => w.parts), async (part) => {
        const { w, j } = partOf.get(part)!;
        const name = w.name;
        if (w.spec) {
          if (j === 0) {
            log(`  ${name} [${source.shape(name)}] → ${fileOf(i)} (${w.spec.bits}-bit, ${w.spec.group === source.shape(name)[1] ? 'per channel' : `group ${w.spec.group}`}, ${w.spec.symmetric ? 'symmetric' : 'asymmetric'})`);
            current = { name, pm: await source.readPacked!(name) };
          }
          const pm = current!.pm;
          if (j === w.parts.length - 1) current = null;
          return packedPart(pm, j);
        }
        log(`  ${name} [${source.shape(name)}] → ${fileOf(i)}`);
        const raw = source.readRaw?.(name);
        if (!raw) return source.read(name);
        return raw.dtype === STORAGE[opts.dtype] ? raw.bytes : toFloat32(Buffer.from(raw.bytes.buffer, raw.bytes.byteOffset, raw.bytes.byteLength), raw.dtype);
      }, undefined, (name) => (index, value) => {
        throw new UserError(`${opts.label ?? opts.copyFrom ?? 'the model'}: tensor "${name}" holds ${value} at index ${index}, beyond ${opts.dtype}'s range (±${DTYPE_MAX[STORAGE[opts.dtype] as 'F16' | 'BF16']}: it would be written as Infinity); `
          + `write it with ${flag(HF_DTYPE)} float32${opts.dtype === 'float16' ? ' or bfloat16' : ''}, or re-download or re-convert the checkpoint if it is corrupt`);
      });
      for (const w of written) {
        for (const p of w.parts) weightMap[p.name] = fileOf(i);
        bytes += bytesOf(w.name);
      }
      files.push(fileOf(i));
    }
    if (n > 1) {
      writeFileSync(join(tmp, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2) + '\n');
      files.push('model.safetensors.index.json');
    }
    if (opts.copyFrom && isGgufFile(opts.copyFrom)) {
      // a GGUF model file: its vocabulary as Hugging Face tokenizer files
      for (const [f, text] of Object.entries(ggufTokenizerFiles(opts.copyFrom) ?? {})) {
        writeFileSync(join(tmp, f), text);
        files.push(f);
      }
    } else if (opts.copyFrom) {
      for (const f of [...COPIED_FILES.filter((c) => existsSync(join(opts.copyFrom!, c))), ...chatTemplateFiles(opts.copyFrom)]) {
        mkdirSync(dirname(join(tmp, f)), { recursive: true });
        writeFileSync(join(tmp, f), readRegularFile(join(opts.copyFrom, f), `${f} of the source model`)); // a FIFO would block the copy
        files.push(f);
      }
    }
    for (const [name, text] of Object.entries(opts.extraFiles ?? {})) {
      writeFileSync(join(tmp, name), typeof text === 'function' ? text() : text);
      if (!files.includes(name)) files.push(name);
    }
  }, 'hf-model');
  return { dir: outDir, files, bytes, dtype: opts.dtype };
}
