/**
 * `mka export hf`: a model directory (or any tensor source) written again as a Hugging Face
 * checkpoint through the shared writer (src/weights/hf-writer.ts), with its merge record and a model card.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaConfig } from '../model/config.ts';
import { HF_DTYPES, writeHfModel, type HfDtype, type HfExportResult } from '../weights/hf-writer.ts';
import { type TensorSource, checkpointSource } from '../weights/source.ts';
import { cardName, modelCard, modelCardHistory } from '../weights/model-card.ts';
import { readMergeRecord } from '../compress/plan-file.ts';

export interface ExportHfOptions {
  /** Source model directory (config, tokenizer and generation config; weights unless tensorSource). */
  model: string;
  out: string;
  /** Default: the source's torch_dtype when it is one of bfloat16, float16, float32; else float32. */
  dtype?: HfDtype;
  shardMb?: number;
  /** Config fields to change (e.g. num_hidden_layers after a merge). */
  configOverride?: Partial<LlamaConfig>;
  /** Tensors to write instead of the model directory's own. */
  tensorSource?: TensorSource;
  log?: (msg: string) => void;
}

/** `mka export hf`: the model in `model` (or `tensorSource`) as a Hugging Face checkpoint in `out`. */
export async function exportHf(opts: ExportHfOptions): Promise<HfExportResult> {
  const own = opts.tensorSource ? null : checkpointSource(opts.model);
  const base = (opts.tensorSource ?? own)!;
  try {
    const config = { ...base.config, ...opts.configOverride };
    const dtype = opts.dtype ?? ((HF_DTYPES as readonly string[]).includes(config.torch_dtype) ? (config.torch_dtype as HfDtype) : 'float32');
    const source: TensorSource = { config, names: base.names, shape: (n) => base.shape(n), read: (n) => base.read(n), readRaw: base.readRaw && ((n) => base.readRaw!(n)) };
    // merge.json is checked before it is carried along (a broken one: one line with its path and the fix)
    const merge = readMergeRecord(opts.model);
    const extraFiles: Record<string, string> = merge ? { 'merge.json': readFileSync(join(opts.model, 'merge.json'), 'utf8') } : {};
    const history = modelCardHistory(merge, base.config);
    extraFiles['README.md'] = modelCard({
      name: cardName(opts.out), baseModel: opts.model, compression: history.compression, quantization: history.quantization,
      summary: `\`${opts.model}\` written again as a Hugging Face checkpoint (${dtype}${config.num_hidden_layers !== base.config.num_hidden_layers ? `, ${config.num_hidden_layers} layers` : ''}).`,
      ...(history.compression ? { files: { 'merge.json': 'how the exported model was compressed from its own base model' } } : {}),
    });
    return await writeHfModel(source, opts.out, { dtype, shardMb: opts.shardMb, copyFrom: opts.model, extraFiles, log: opts.log });
  } finally {
    own?.close();
  }
}
