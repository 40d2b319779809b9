import { defineCommand } from '../options.ts';
import { setup } from '../common.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { MAX_NEW_TOKENS, MODEL, PROMPT, REVISION, SAMPLING_SEED, TEMPERATURE } from '../../model/options.ts';

export const generateCommand = defineCommand({
  command: 'generate',
  describe: 'Generate text (greedy when --temperature is 0)',
  options: [...COMPUTE_OPTIONS, MODEL, REVISION, PROMPT, MAX_NEW_TOKENS, TEMPERATURE, SAMPLING_SEED],
  examples: [['$0 generate --model models/demo --prompt "Once upon a time"', '']],
  run: async (v, ctx) => {
    await setup({ ...v, quiet: ctx.quiet });
    const { runGenerate } = await import('../../model/inspect.ts');
    const r = await runGenerate({ model: v.model, prompt: v.prompt, maxNewTokens: v.maxNewTokens, temperature: v.temperature, seed: v.seed, log: ctx.log });
    if (ctx.json) process.stdout.write(JSON.stringify(r) + '\n');
    else process.stdout.write(`${v.prompt}${r.text}\n`);
  },
});
