import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../common.ts';
import { FORCE_DIR, FORCE_FILE, claimFile, claimOutput } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { defineCommand } from '../options.ts';
import { option } from '../../runtime/options.ts';
import { MODEL, REVISION } from '../../model/options.ts';
import { GGUF_FILE, GGUF_NAME, GGUF_OUT, GGUF_TYPE, HF_DTYPE, HF_SHARD_MB, MAX_SEQ, TFJS_QUANTIZE, TFJS_SHARD_MB } from '../../export/options.ts';

const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
const OUT = option({ ...OUT_SPEC, required: true, help: 'output directory (replaced atomically)' });

const tfjsCommand = defineCommand({
  command: 'tfjs',
  describe: 'TensorFlow.js GraphModel (model.json + weight shards): input_ids int32 [batch, seq] → logits [batch, seq, vocab]',
  options: [MODEL, REVISION, OUT, TFJS_QUANTIZE, TFJS_SHARD_MB, MAX_SEQ, FORCE_DIR],
  examples: [['$0 export tfjs --model out/merged --out web/model --quantize uint8', '']],
  run: async (v, ctx) => {
    const release = claimOutput(v.out, 'export tfjs', 'tfjs-model', v.force, ctx.inputs);
    const { exportTfjs } = await import('../../export/graph-model.ts');
    const r = await exportTfjs({ model: v.model, out: v.out, quantize: v.quantize, shardMb: v.shardMb, maxSeq: v.maxSeq });
    release();
    if (ctx.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    ctx.log(`weights: ${mib(r.float32Bytes)} as float32 → ${mib(r.weightBytes)} stored (${r.quantization}) in ${r.files.length - 1} shards`);
    process.stdout.write(`${v.out}/model.json (sequences up to ${r.maxSeq} tokens)\n`);
  },
});

const hfCommand = defineCommand({
  command: 'hf',
  describe: 'Hugging Face checkpoint: config.json, safetensors (sharded with an index when large), tokenizer files',
  options: [MODEL, REVISION, OUT, HF_DTYPE, HF_SHARD_MB, FORCE_DIR],
  examples: [['$0 export hf --model out/merged --out out/merged-bf16 --dtype bfloat16', '']],
  run: async (v, ctx) => {
    const release = claimOutput(v.out, 'export hf', 'hf-model', v.force, ctx.inputs);
    const { exportHf } = await import('../../export/hf.ts');
    const r = await exportHf({ model: v.model, out: v.out, dtype: v.dtype, shardMb: v.shardMb });
    release();
    if (ctx.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    ctx.log(`weights: ${mib(r.bytes)} (${r.dtype})`);
    process.stdout.write(`${v.out}: ${r.files.join(', ')}\n`);
  },
});

const ggufCommand = defineCommand({
  command: 'gguf',
  describe: 'one GGUF file for llama.cpp, ollama and LM Studio (f32, f16, bf16, q8_0 or q4_0 weights; packed weights keep their blocks; tokenizer and chat template included)',
  options: [MODEL, REVISION, GGUF_OUT, GGUF_TYPE, GGUF_NAME, FORCE_FILE],
  examples: [['$0 export gguf --model out/merged --out merged-q4_0.gguf --type q4_0', 'then: llama-cli -m merged-q4_0.gguf -p "Hello"']],
  run: async (v, ctx) => {
    claimFile(v.out, GGUF_FILE, v.force, ctx.inputs, GGUF_OUT);
    const { exportGguf } = await import('../../export/gguf.ts');
    const r = await exportGguf({ model: v.model, out: v.out, type: v.type, name: v.name, log: ctx.log, quiet: ctx.quiet || ctx.json });
    if (ctx.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    ctx.log(`tensors: ${Object.entries(r.tensorTypes).map(([t, n]) => `${n} ${t}`).join(', ')}; tokenizer: ${r.tokenizer}`);
    process.stdout.write(`${v.out}: ${mib(r.bytes)} (${r.type})\n`);
  },
});

export const exportCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'export',
  describe: 'Export a model for serving: tfjs (GraphModel), hf (Hugging Face checkpoint) or gguf (llama.cpp, ollama, LM Studio)',
  builder: (y: Argv<GlobalArgs>) => y.command(tfjsCommand).command(hfCommand).command(ggufCommand).demandCommand(1, 'name a format: tfjs, hf or gguf') as Argv<GlobalArgs>,
  handler: () => {},
};
