import type { CommandModule } from 'yargs';
import { type GlobalArgs, emitJson, setup } from '../common.ts';
import { parseIds, runForward } from '../../model/run.ts';
import { readConfig } from '../../model/config.ts';
import { checkIds } from '../validate.ts';

interface Args extends GlobalArgs { model: string; text?: string; ids?: string; 'hidden-states': boolean; out?: string }

export const forwardCommand: CommandModule<GlobalArgs, Args> = {
  command: 'forward',
  describe: 'Run one sequence and write its logits (and hidden states) as JSON',
  builder: (y) => y
    .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
    .option('text', { type: 'string', describe: 'text to tokenize (BOS as the tokenizer is configured)' })
    .option('ids', { type: 'string', describe: 'comma-separated token ids instead of --text' })
    .option('hidden-states', { type: 'boolean', default: false, describe: 'also write hidden_states [L+1][T][H] (HF convention)' })
    .option('out', { type: 'string', describe: 'output JSON file (default: stdout)' })
    .conflicts('text', 'ids')
    .check((a) => (a.text !== undefined || a.ids !== undefined) || 'give --text or --ids')
    .example('$0 forward --model models/demo --ids 1,5,9 --hidden-states --out f.json', ''),
  handler: async (a) => {
    const ids = a.ids ? parseIds(a.ids) : undefined;
    if (ids) checkIds(ids, readConfig(a.model).vocab_size);
    await setup(a);
    const r = await runForward({ model: a.model, text: a.text, ids, hiddenStates: a['hidden-states'] });
    emitJson(r, a.out);
  },
};
