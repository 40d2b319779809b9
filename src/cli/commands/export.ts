import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, claimOutput, forceOption, logger, type ArgsOf } from '../common.ts';
import { exportTfjs } from '../../export/graph-model.ts';
import { exportHf } from '../../export/hf.ts';
import { HF_DTYPES, type HfDtype } from '../../weights/hf-writer.ts';
import { QUANT_SCHEMES, type QuantScheme } from '../../weights/quantize.ts';

const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

const tfjsOptions = (y: Argv<GlobalArgs>) => forceOption(y)
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('out', { type: 'string', demandOption: true, describe: 'output directory (replaced atomically)' })
  .option('quantize', { choices: QUANT_SCHEMES, default: 'none' as QuantScheme, describe: 'weight storage: float32, float16, or uint8/uint16 affine per tensor (tfjs dequantizes at load)' })
  .option('shard-mb', { type: 'number', default: 4, describe: 'weight shard size in MiB' })
  .option('max-seq', { type: 'number', describe: 'longest input the model accepts (default: max_position_embeddings)' })
  .example('$0 export tfjs --model out/merged --out web/model --quantize uint8', '');

const tfjsCommand: CommandModule<GlobalArgs, ArgsOf<typeof tfjsOptions>> = {
  command: 'tfjs',
  describe: 'TensorFlow.js GraphModel (model.json + weight shards): input_ids int32 [batch, seq] → logits [batch, seq, vocab]',
  builder: tfjsOptions,
  handler: async (a) => {
    const log = logger(a);
    const release = claimOutput(a.out, 'export tfjs', 'tfjs-model', a);
    const r = await exportTfjs({ model: a.model, out: a.out, quantize: a.quantize, shardMb: a['shard-mb'], maxSeq: a['max-seq'] });
    release();
    if (a.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    log(`weights: ${mib(r.float32Bytes)} as float32 → ${mib(r.weightBytes)} stored (${r.quantization}) in ${r.files.length - 1} shards`);
    process.stdout.write(`${a.out}/model.json (sequences up to ${r.maxSeq} tokens)\n`);
  },
};

const hfOptions = (y: Argv<GlobalArgs>) => forceOption(y)
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('out', { type: 'string', demandOption: true, describe: 'output directory (replaced atomically)' })
  .option('dtype', { choices: HF_DTYPES, describe: 'storage dtype (default: the source model\'s torch_dtype, else float32)' })
  .option('shard-mb', { type: 'number', default: 5000, describe: 'largest shard in MB (10^6 bytes)' })
  .example('$0 export hf --model out/merged --out out/merged-bf16 --dtype bfloat16', '');

const hfCommand: CommandModule<GlobalArgs, ArgsOf<typeof hfOptions>> = {
  command: 'hf',
  describe: 'Hugging Face checkpoint: config.json, safetensors (sharded with an index when large), tokenizer files',
  builder: hfOptions,
  handler: async (a) => {
    const log = logger(a);
    const release = claimOutput(a.out, 'export hf', 'hf-model', a);
    const r = await exportHf({ model: a.model, out: a.out, dtype: a.dtype, shardMb: a['shard-mb'] });
    release();
    if (a.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    log(`weights: ${mib(r.bytes)} (${r.dtype})`);
    process.stdout.write(`${a.out}: ${r.files.join(', ')}\n`);
  },
};

export const exportCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'export',
  describe: 'Export a model for serving: tfjs (GraphModel) or hf (Hugging Face checkpoint)',
  builder: (y: Argv<GlobalArgs>) => y.command(tfjsCommand).command(hfCommand).demandCommand(1, 'name a format: tfjs or hf') as Argv<GlobalArgs>,
  handler: () => {},
};
