/**
 * Every export format by name: what it writes (a directory of one of mka's output kinds, or a single
 * file) and the library call that writes it, with its own parameters. `mka export NAME` is built from
 * this table (src/cli/commands/export.ts declares each format's options).
 */
import type { OutputFileKind, OutputKind } from '../io/output-dir.ts';
import { GgufFile } from '../gguf/reader.ts';
import { exportTfjs, type TfjsExportOptions } from './graph-model.ts';
import { exportHf } from './hf.ts';
import type { HfDtype } from '../weights/hf-writer.ts';
import { exportGguf, type GgufOutType } from './gguf.ts';

/** What an export prints: log lines (stderr, unless quiet), the result's path line (stdout) and its JSON (--json). */
export interface ExportReport {
  log: string[];
  stdout: string;
  json: unknown;
}

export interface ExportFormat<P extends object> {
  name: string;
  description: string;
  /** An output directory of this kind, or a single file of this kind (how mka knows its own earlier file). */
  output: { directory: OutputKind } | { file: OutputFileKind };
  run(model: string, out: string, params: P, log: (msg: string) => void, quiet: boolean): Promise<ExportReport>;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

export const tfjsFormat: ExportFormat<TfjsExportOptions> = {
  name: 'tfjs',
  description: 'TensorFlow.js GraphModel (model.json + weight shards): input_ids int32 [batch, seq] → logits [batch, seq, vocab]',
  output: { directory: 'tfjs-model' },
  async run(model, out, params) {
    const r = await exportTfjs({ model, out, ...params });
    return {
      log: [`weights: ${mib(r.float32Bytes)} as float32 → ${mib(r.weightBytes)} stored (${r.quantization}) in ${r.files.length - 1} shards`],
      stdout: `${out}/model.json (sequences up to ${r.maxSeq} tokens)`,
      json: r,
    };
  },
};

export const hfFormat: ExportFormat<{ dtype?: HfDtype; shardMb?: number }> = {
  name: 'hf',
  description: 'Hugging Face checkpoint: config.json, safetensors (sharded with an index when large), tokenizer files',
  output: { directory: 'hf-model' },
  async run(model, out, params) {
    const r = await exportHf({ model, out, dtype: params.dtype, shardMb: params.shardMb });
    return { log: [`weights: ${mib(r.bytes)} (${r.dtype})`], stdout: `${out}: ${r.files.join(', ')}`, json: r };
  },
};

/** Whether `path` is a GGUF file mka wrote (its metadata has mka.version). */
function ggufByMka(path: string): boolean {
  try {
    const g = new GgufFile(path);
    try {
      return g.has('mka.version');
    } finally {
      g.close();
    }
  } catch {
    return false;
  }
}

export const ggufFormat: ExportFormat<{ type: GgufOutType; name?: string }> = {
  name: 'gguf',
  description: 'one GGUF file for llama.cpp, ollama and LM Studio (f32, f16, bf16, q8_0 or q4_0 weights; tokenizer and chat template included)',
  output: { file: { label: 'a GGUF file mka exported', prefix: 'GGUF', owned: ggufByMka } },
  async run(model, out, params, log, quiet) {
    const r = await exportGguf({ model, out, type: params.type, name: params.name, log, quiet });
    const types = Object.entries(r.tensorTypes).map(([t, n]) => `${n} ${t}`).join(', ');
    return { log: [`tensors: ${types}; tokenizer: ${r.tokenizer}`], stdout: `${out}: ${mib(r.bytes)} (${r.type})`, json: r };
  },
};

export const EXPORT_FORMATS = [tfjsFormat, hfFormat, ggufFormat] as const;
