/**
 * `mka export gguf`: a model as one GGUF file that llama.cpp (and ollama, LM Studio, transformers'
 * GGUF loader) load: llama.cpp's tensor names and Q/K row order, the architecture metadata, the
 * tokenizer (src/gguf/vocab.ts) and the chat template. Tensors are read, converted and written one at
 * a time (src/gguf/writer.ts), so a model larger than memory exports too.
 *
 * Types follow llama.cpp's convert_hf_to_gguf.py: norms, biases and other 1-D tensors stay F32; every
 * matrix gets the requested type; a matrix whose rows do not divide into blocks of 32 falls back to
 * F16 when the type is Q8_0/Q4_0 (the converter's fallback; llama-quantize refuses such tensors), and
 * the export says which, once, with counts. Llama 3.1-style `llama3` RoPE scaling is stored as
 * llama.cpp stores it, the F32 tensor rope_freqs.weight.
 *
 * Packed weights (`mka quantize`, docs/quantization.md; or a GGUF's own Q8_0/Q4_0/Q4_1 blocks) exported as
 * q8_0 or q4_0 keep their quants and scales block for block, whatever their bits: symmetric 8-bit as
 * Q8_0, symmetric 4-bit as Q4_0, asymmetric 4-bit as Q4_1, a group of 64, 128 or a whole row repeating
 * its scale in each block; only those GGUF has no type for (8-bit asymmetric) are quantized again, and
 * rows that do not divide into blocks fall back to F16 as above. Exported as f32/f16/bf16 they are
 * dequantized.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { LlamaConfig } from '../model/config.ts';
import { expectedTensors } from '../model/config.ts';
import { openModelDir } from '../model/model.ts';
import { readJsonObject } from '../io/read.ts';
import { UserError } from '../runtime/errors.ts';
import { mkaVersion } from '../runtime/version.ts';
import { progress } from '../runtime/progress.ts';
import { exportMetadata } from './metadata.ts';
import { FILE_TYPE, GgmlType, type GgufValue, QUANTIZATION_VERSION, type SupportedType, ValueType } from '../gguf/format.ts';
import { isGgufFile, withGguf } from '../gguf/reader.ts';
import { MKA_ROPE_SCALING, ggufArch, hparamMetadata, ropeFreqFactors } from '../gguf/hparams.ts';
import { blockTypeOf, encode, packBlocks } from '../gguf/quants.ts';
import { ROPE_FREQS, ggufName, permuteRows, permutedHeads } from '../gguf/tensor-names.ts';
import { chatTemplateMetadata, vocabMetadata } from '../gguf/vocab.ts';
import { CHAT_TEMPLATE_DIR, CHAT_TEMPLATE_FILE, checkTokenizerConfig, modelChatTemplates } from '../tokenizer/config.ts';
import { GGUF_TYPE, type GgufOutType } from './options.ts';
import { flag } from '../runtime/options.ts';
import { type GgufTensorToWrite, meta, writeGguf } from '../gguf/writer.ts';

export { GGUF_TYPES, type GgufOutType } from './options.ts';
const TYPE_OF: Record<GgufOutType, SupportedType> = {
  f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0,
};

export interface ExportGgufOptions {
  /** Model directory or GGUF file. */
  model: string;
  /** The .gguf file to write. */
  out: string;
  type: GgufOutType;
  /** general.name (default: the model directory's name). */
  name?: string;
  log?: (msg: string) => void;
  /** No progress line. */
  quiet?: boolean;
}

export interface GgufExportResult {
  file: string;
  bytes: number;
  type: GgufOutType;
  /** Tensors written per ggml type, e.g. {Q4_0: 56, F16: 8, F32: 17}. */
  tensorTypes: Record<string, number>;
  /** Matrices whose rows do not divide into blocks of 32 and were written as F16 instead. */
  fallback: string[];
  /** Packed weights written as their own Q8_0/Q4_0/Q4_1 blocks (q8_0/q4_0 exports). */
  packedKept: number;
  /** Packed weights no GGUF block type holds (8-bit asymmetric), quantized again to the type asked for. */
  requantized: string[];
  /**
   * The model rounds its decoder's activations to int8 per token (W8A8, quantization_config act_bits 8),
   * which GGUF cannot say: llama.cpp quantizes them per block of 32 in its Q8_0/Q4_0 products (and not
   * at all in float ones). Said once.
   */
  perTokenActivations: boolean;
  /** The tokenizer written: "llama" (SentencePiece), "gpt2" (byte-level BPE) or "none". */
  tokenizer: string;
  /** Pairs llama.cpp's SentencePiece merging may join that the model's BPE merges never do. */
  spmOnlyPairs: number;
}

/** The tokenizer metadata of the model: from its tokenizer files, or copied from a GGUF source. */
function tokenizerMetadata(model: string, config: LlamaConfig, log: (msg: string) => void): { entries: [string, GgufValue][]; kind: string; spmOnly: number } {
  if (isGgufFile(model)) {
    return withGguf(model, (g) => {
      // (arrays copied out: large ones are read from the file when first used)
      const entries = [...g.metadata].filter(([k]) => k.startsWith('tokenizer.'))
        .map(([k, v]): [string, GgufValue] => [k, v.type === ValueType.ARRAY ? { type: ValueType.ARRAY, array: { ...v.array, values: v.array.values } as typeof v.array } : v]);
      return { entries, kind: g.string('tokenizer.ggml.model', 'none'), spmOnly: 0 };
    });
  }
  const file = join(model, 'tokenizer.json');
  if (!existsSync(file)) {
    log(`${model}: no tokenizer.json, so the GGUF has no vocabulary (tokenizer.ggml.model "none"): llama.cpp runs it on token ids only`);
    // the special ids of config.json, as gguf-py's SpecialVocab writes them
    const eos = Array.isArray(config.eos_token_id) ? config.eos_token_id[0] : config.eos_token_id;
    const ids = ([['bos', config.bos_token_id], ['eos', eos]] as const).filter((e): e is readonly ['bos' | 'eos', number] => typeof e[1] === 'number');
    return { entries: [['tokenizer.ggml.model', meta.str('none')], ...ids.map(([k, id]) => [`tokenizer.ggml.${k}_token_id`, meta.u32(id)] as [string, GgufValue])], kind: 'none', spmOnly: 0 };
  }
  const tokenizer = readJsonObject(file, 'tokenizer');
  const cfgFile = join(model, 'tokenizer_config.json');
  const tokConfig = existsSync(cfgFile) ? readJsonObject(cfgFile, 'tokenizer config') : {};
  checkTokenizerConfig(tokConfig, cfgFile);
  const v = vocabMetadata(tokenizer, tokConfig, config.vocab_size, config, file);
  if (v.spmOnlyPairs > 0) {
    const [a, b] = v.spmOnlyExample!;
    log(`tokenizer: llama.cpp's SentencePiece merging can join ${v.spmOnlyPairs} pair(s) of tokens that the BPE merges never join (e.g. ${JSON.stringify(a)} + ${JSON.stringify(b)}); text where that happens tokenizes differently in llama.cpp`);
  }
  const chat = modelChatTemplates(model, tokConfig);
  if (chat.files.length && tokConfig.chat_template != null) {
    log(`tokenizer: ${chat.files.join(', ')} take the place of tokenizer_config.json's chat_template, as transformers loads them`);
  }
  const chatEntries = chatTemplateMetadata(chat.templates, chat.files.length ? join(model, chat.files.some((f) => f.startsWith(CHAT_TEMPLATE_DIR)) ? CHAT_TEMPLATE_DIR : CHAT_TEMPLATE_FILE) : cfgFile);
  return { entries: [...v.metadata, ...chatEntries], kind: v.model, spmOnly: v.spmOnlyPairs };
}

/** The merge record of the model (merge.json, or the mka.merge metadata of a GGUF source), as JSON text. */
function mergeRecord(model: string): string | null {
  if (isGgufFile(model)) {
    return withGguf(model, (g) => (g.has('mka.merge') ? g.string('mka.merge') : null));
  }
  const merge = exportMetadata(model, '').merge;
  return merge === null ? null : JSON.stringify(merge);
}

/** The ggml type of a float tensor exported as `type`: see the file comment. */
function tensorType(hf: string, shape: number[], type: SupportedType): SupportedType {
  if (shape.length <= 1 || hf.endsWith('norm.weight')) return GgmlType.F32;
  if ((type === GgmlType.Q8_0 || type === GgmlType.Q4_0) && shape[shape.length - 1] % 32 !== 0) return GgmlType.F16;
  return type;
}

/** Writes the model in `opts.model` as a GGUF file `opts.out`. */
export async function exportGguf(opts: ExportGgufOptions): Promise<GgufExportResult> {
  const log = opts.log ?? (() => {});
  const { config, ckpt } = openModelDir(opts.model);
  try {
    const shapes = expectedTensors(config);
    const arch = ggufArch(config.model_type);
    const want = TYPE_OF[opts.type];
    const quantized = want === GgmlType.Q8_0 || want === GgmlType.Q4_0;
    const tok = tokenizerMetadata(opts.model, config, log);
    const merge = mergeRecord(opts.model);

    const tensors: (GgufTensorToWrite & { hf: string | null; blocks: boolean })[] = [];
    const ropeFreqs = ropeFreqFactors(config);
    if (ropeFreqs) tensors.push({ hf: null, name: ROPE_FREQS, dims: [ropeFreqs.length], type: GgmlType.F32, blocks: false });
    const fallback: string[] = [], requantized: string[] = [], dequantized: string[] = [];
    let kept = 0;
    for (const [hf, shape] of shapes) {
      const name = ggufName(hf);
      if (name === null) throw new UserError(`${opts.model}: tensor "${hf}" has no llama.cpp name; cannot write it to GGUF`);
      const packed = ckpt.packedInfo(hf);
      // a packed weight keeps its own blocks (Q8_0, Q4_0 or Q4_1) when a block type is asked for: nothing is rounded twice
      const blockType = packed && quantized ? blockTypeOf(packed) : null;
      const type = blockType ?? tensorType(hf, shape, want);
      if (blockType !== null) kept++;
      else if (type !== want && type === GgmlType.F16) fallback.push(hf);
      else if (packed && quantized) requantized.push(hf);
      else if (packed) dequantized.push(hf);
      tensors.push({ hf, name, dims: [...shape].reverse(), type, blocks: blockType !== null });
    }
    const counts: Record<string, number> = {};
    for (const t of tensors) counts[GgmlType[t.type]] = (counts[GgmlType[t.type]] ?? 0) + 1;
    if (fallback.length) {
      const rows = [...new Set(fallback.map((n) => shapes.get(n)!.at(-1)))].join(', ');
      log(`${opts.type}: ${fallback.length} of ${tensors.length} tensors fall back to F16, their rows (${rows} values) not dividing into blocks of 32 (as llama.cpp's converter does), e.g. ${fallback[0]}`);
    }
    if (kept) {
      const byType = new Map<string, number>();
      for (const t of tensors) if (t.blocks) byType.set(GgmlType[t.type], (byType.get(GgmlType[t.type]) ?? 0) + 1);
      log(`${opts.type}: ${kept} packed weights keep their own blocks (${[...byType].map(([t, n]) => `${n} ${t}`).join(', ')}), not quantized again`);
    }
    if (requantized.length) {
      log(`${opts.type}: ${requantized.length} packed weights have no GGUF block type (8-bit with a min per group), so they are dequantized and quantized again as ${opts.type}, e.g. ${requantized[0]}`);
    }
    if (dequantized.length) log(`${opts.type}: ${dequantized.length} packed weights are written dequantized, as ${opts.type} values`);
    const perTokenActivations = config.quantization_config?.act_bits === 8;
    if (perTokenActivations) {
      log(`${opts.type}: the model rounds its activations to int8 per token (W8A8), which GGUF cannot hold: llama.cpp ${quantized ? `rounds the activations of its ${opts.type} products to int8 per block of 32 instead (a finer grid; docs/gguf.md)` : `multiplies ${opts.type} weights by float activations`}`);
    }
    const baseName = opts.name ?? basename(opts.model.replace(/[\\/]+$/, '')).replace(/\.gguf$/i, '');
    const metadata: [string, GgufValue][] = [
      ['general.architecture', meta.str(arch)],
      ['general.type', meta.str('model')],
      ['general.name', meta.str(baseName)],
      ['general.file_type', meta.u32(FILE_TYPE[want])],
      ['general.quantization_version', meta.u32(QUANTIZATION_VERSION)],
      ...hparamMetadata(config),
      ...tok.entries,
      ['mka.version', meta.str(mkaVersion())],
      ...(ropeFreqs ? [[MKA_ROPE_SCALING, meta.str(JSON.stringify(config.rope_scaling))] as [string, GgufValue]] : []),
      ...(merge ? [['mka.merge', meta.str(merge)] as [string, GgufValue]] : []),
    ];
    const heads = config.num_attention_heads, kvHeads = config.num_key_value_heads;
    const byName = new Map(tensors.map((t) => [t.name, t]));
    const bar = progress(`gguf ${opts.type}`, tensors.length, { unit: 'tensors', quiet: opts.quiet });
    const bytes = await writeGguf(opts.out, metadata, tensors, async (name) => {
      const t = byName.get(name)!;
      if (t.hf === null) {
        bar.tick();
        return encode(GgmlType.F32, ropeFreqs!);
      }
      const perm = permutedHeads(t.hf, arch, heads, kvHeads);
      if (t.blocks) {
        const joined = packBlocks(ckpt.readPacked(t.hf));
        if (!joined || joined.type !== t.type) throw new Error(`${opts.model}: "${t.hf}" does not join into ${GgmlType[t.type]} blocks (a scale that is not an f16 value)`);
        bar.tick();
        return perm ? permuteRows(joined.bytes, joined.bytes.length / t.dims[1], perm, true) : joined.bytes;
      }
      let values = ckpt.read(t.hf);
      if (perm) {
        const rows = t.dims.length === 1 ? t.dims[0] : t.dims[1];
        const p = permuteRows(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), (values.length / rows) * 4, perm, true);
        values = new Float32Array(p.buffer, p.byteOffset, values.length);
      }
      const data = encode(t.type as SupportedType, values, (i, v) => {
        throw new UserError(`${opts.model}: tensor "${t.hf}" holds ${v} at index ${i}, beyond what ${GgmlType[t.type]} can hold (it would be written as Infinity); `
          + `export with ${flag(GGUF_TYPE)} f32${t.type === GgmlType.BF16 ? '' : ' or bf16'}, or re-download or re-convert the checkpoint if it is corrupt`);
      });
      bar.tick();
      return data;
    });
    bar.done();
    return { file: opts.out, bytes, type: opts.type, tensorTypes: counts, fallback, packedKept: kept, requantized, perTokenActivations, tokenizer: tok.kind, spmOnlyPairs: tok.spmOnly };
  } finally {
    ckpt.close();
  }
}
