import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, logger, setup, type ArgsOf, computeOptions } from '../common.ts';
import { runGenerate } from '../../model/inspect.ts';

const options = (y: Argv<GlobalArgs>) => computeOptions(y)
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('prompt', { type: 'string', default: '', describe: 'prompt text; empty starts from BOS' })
  .option('max-new-tokens', { type: 'number', default: 64, describe: 'tokens to generate at most' })
  .option('temperature', { type: 'number', default: 0, describe: '0 = greedy; >0 samples' })
  .option('seed', { type: 'number', default: 1, describe: 'sampling seed' })
  .example('$0 generate --model models/demo --prompt "Once upon a time"', '');

export const generateCommand: CommandModule<GlobalArgs, ArgsOf<typeof options>> = {
  command: 'generate',
  describe: 'Generate text (greedy when --temperature is 0)',
  builder: options,
  handler: async (a) => {
    await setup(a);
    const r = await runGenerate({ model: a.model, prompt: a.prompt, maxNewTokens: a['max-new-tokens'], temperature: a.temperature, seed: a.seed, log: logger(a) });
    if (a.json) process.stdout.write(JSON.stringify(r) + '\n');
    else process.stdout.write(`${a.prompt}${r.text}\n`);
  },
};
