import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, claimFile, emitJson, FORCE_FILE, forceOption, setup, type ArgsOf, computeOptions } from '../common.ts';
import { OUTPUT_FILES } from '../../io/output-dir.ts';
import { FORWARD_LOGITS, type ForwardLogits, parseIds, runForward } from '../../model/inspect.ts';
import { readConfig } from '../../model/config.ts';
import { checkIds } from '../validate.ts';
import { UserError } from '../../runtime/errors.ts';

const FORMAT = `Output (JSON): {"input_ids": [...], "top_k": [{"id", "token", "logit", "prob"}, ...] (the next token after the last position, most likely first),
"logits_positions": [...] and "logits": one row of vocab_size logits per listed position (with --logits last|all),
"hidden_states": [L+1][T][H] (with --hidden-states: the embeddings, then each block's output, the last after the final norm)}`;

const options = (y: Argv<GlobalArgs>) => forceOption(computeOptions(y), FORCE_FILE)
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('text', { type: 'string', describe: 'text to tokenize (BOS as the tokenizer is configured)' })
  .option('ids', { type: 'string', describe: 'comma-separated token ids instead of --text' })
  .option('top-k', { type: 'number', default: 10, describe: 'most likely next tokens listed in top_k' })
  .option('logits', { choices: FORWARD_LOGITS, default: 'none' as ForwardLogits, describe: 'also write logits: of the last position, or of every position ([T][vocab], large for long inputs)' })
  .option('hidden-states', { type: 'boolean', default: false, describe: 'also write hidden_states [L+1][T][H] (HF convention)' })
  .option('out', { type: 'string', describe: 'output JSON file (default: stdout)' })
  .conflicts('text', 'ids')
  .check((a) => {
    if (a.text === undefined && a.ids === undefined) throw new UserError('forward: give the input with --text "..." or --ids 1,2,3');
    return true;
  })
  .epilogue(FORMAT)
  .example('$0 forward --model models/demo --text "The capital of France is"', 'the 10 most likely next tokens')
  .example('$0 forward --model models/demo --ids 1,5,9 --logits all --hidden-states --out f.json', 'every position\'s logits and hidden states');

export const forwardCommand: CommandModule<GlobalArgs, ArgsOf<typeof options>> = {
  command: 'forward',
  describe: 'Run one sequence: the most likely next tokens, and on request its logits and hidden states, as JSON',
  builder: options,
  handler: async (a) => {
    claimFile(a.out, OUTPUT_FILES.forward, a);
    const ids = a.ids ? parseIds(a.ids) : undefined;
    if (ids) checkIds(ids, readConfig(a.model).vocab_size);
    await setup(a);
    const r = await runForward({ model: a.model, text: a.text, ids, topK: a['top-k'], logits: a.logits, hiddenStates: a['hidden-states'] });
    emitJson(r, a.out);
  },
};
