import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, claimOutput, forceOption, logger, type ArgsOf } from '../common.ts';
import { convertLlama2c } from '../../convert/llama2c.ts';

const options = (y: Argv<GlobalArgs>) => forceOption(y)
  .option('checkpoint', { type: 'string', demandOption: true, describe: 'llama2.c model .bin (legacy or ak42 v1 header)' })
  .option('tokenizer', { type: 'string', demandOption: true, describe: 'llama2.c tokenizer.bin' })
  .option('out', { type: 'string', demandOption: true, describe: 'output model directory' })
  .option('dtype', { choices: ['float32'] as const, default: 'float32' as const, describe: 'storage dtype (llama2.c weights are float32)' })
  .example('$0 convert-llama2c --checkpoint stories260K.bin --tokenizer tok512.bin --out models/stories260K', '');

export const convertCommand: CommandModule<GlobalArgs, ArgsOf<typeof options>> = {
  command: 'convert-llama2c',
  describe: 'Import a llama2.c checkpoint and tokenizer.bin as a Hugging Face model directory',
  builder: options,
  handler: async (a) => {
    const release = claimOutput(a.out, 'convert-llama2c', 'hf-model', a);
    await convertLlama2c({ checkpoint: a.checkpoint, tokenizer: a.tokenizer, out: a.out });
    release();
    logger(a)(`converted ${a.checkpoint} -> ${a.out}`);
  },
};
