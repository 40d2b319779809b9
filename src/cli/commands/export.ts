import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { FORCE_FILE, type GlobalArgs, claimFile, claimOutput, forceOption, logger } from '../common.ts';
import { EXPORT_FORMATS, type ExportFormat, ggufFormat, hfFormat, tfjsFormat } from '../../export/registry.ts';
import { HF_DTYPES, type HfDtype } from '../../weights/hf-writer.ts';
import { QUANT_SCHEMES, type QuantScheme } from '../../weights/quantize.ts';
import { GGUF_TYPES, type GgufOutType } from '../../export/gguf.ts';

const modelOption = <T>(y: Argv<T>) => y.option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory (or GGUF file)' });

const tfjsOptions = (y: Argv<GlobalArgs>) => modelOption(forceOption(y))
  .option('out', { type: 'string', demandOption: true, describe: 'output directory (replaced atomically)' })
  .option('quantize', { choices: QUANT_SCHEMES, default: 'none' as QuantScheme, describe: 'weight storage: float32, float16, or uint8/uint16 affine per tensor (tfjs dequantizes at load)' })
  .option('shard-mb', { type: 'number', default: 4, describe: 'weight shard size in MiB' })
  .option('max-seq', { type: 'number', describe: 'longest input the model accepts (default: max_position_embeddings)' })
  .example('$0 export tfjs --model out/merged --out web/model --quantize uint8', '');

const hfOptions = (y: Argv<GlobalArgs>) => modelOption(forceOption(y))
  .option('out', { type: 'string', demandOption: true, describe: 'output directory (replaced atomically)' })
  .option('dtype', { choices: HF_DTYPES, describe: 'storage dtype (default: the source model\'s torch_dtype, else float32)' })
  .option('shard-mb', { type: 'number', default: 5000, describe: 'largest shard in MB (10^6 bytes)' })
  .example('$0 export hf --model out/merged --out out/merged-bf16 --dtype bfloat16', '');

const ggufOptions = (y: Argv<GlobalArgs>) => modelOption(forceOption(y, FORCE_FILE))
  .option('out', { type: 'string', demandOption: true, describe: 'the .gguf file to write (replaced atomically)' })
  .option('type', { choices: GGUF_TYPES, default: 'f16' as GgufOutType, describe: 'weight type of the matrices (norms stay f32; q8_0/q4_0 matrices whose rows do not divide into blocks of 32 fall back to f16)' })
  .option('name', { type: 'string', describe: 'general.name in the file (default: the model directory\'s name)' })
  .example('$0 export gguf --model out/merged --out merged-q4_0.gguf --type q4_0', 'then: llama-cli -m merged-q4_0.gguf -p "Hello"');

/** One `mka export NAME` command: claims the output (directory or file), runs the format, reports. */
function formatCommand<T extends GlobalArgs & { model: string; out: string; force: boolean }, P extends object>(
  format: ExportFormat<P>, builder: (y: Argv<GlobalArgs>) => Argv<T>, params: (a: ArgumentsCamelCase<T>) => P,
): CommandModule<GlobalArgs, T> {
  return {
    command: format.name,
    describe: format.description,
    builder,
    handler: async (a) => {
      const log = logger(a);
      let release = () => {};
      if ('directory' in format.output) release = claimOutput(a.out, `export ${format.name}`, format.output.directory, a);
      else claimFile(a.out, format.output.file, a);
      const r = await format.run(a.model, a.out, params(a), log, a.quiet || a.json);
      release();
      if (a.json) {
        process.stdout.write(JSON.stringify(r.json) + '\n');
        return;
      }
      for (const line of r.log) log(line);
      process.stdout.write(`${r.stdout}\n`);
    },
  };
}

const commands = [
  formatCommand(tfjsFormat, tfjsOptions, (a) => ({ quantize: a.quantize, shardMb: a['shard-mb'], maxSeq: a['max-seq'] })),
  formatCommand(hfFormat, hfOptions, (a) => ({ dtype: a.dtype as HfDtype | undefined, shardMb: a['shard-mb'] })),
  formatCommand(ggufFormat, ggufOptions, (a) => ({ type: a.type, name: a.name })),
];

export const exportCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'export',
  describe: 'Export a model for serving: tfjs (GraphModel), hf (Hugging Face checkpoint) or gguf (llama.cpp, ollama, LM Studio)',
  builder: (y: Argv<GlobalArgs>) => commands.reduce((yy, c) => yy.command(c as CommandModule<GlobalArgs, never>), y)
    .demandCommand(1, `name a format: ${EXPORT_FORMATS.map((f) => f.name).join(', ')}`) as Argv<GlobalArgs>,
  handler: () => {},
};
