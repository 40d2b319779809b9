import { defineCommand } from '../options.ts';
import { FORCE_FILE, claimFile, emitJson, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { option } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { HIDDEN_STATES, IDS, LOGITS, MODEL, REVISION, TEXT, TOP_K } from '../../model/options.ts';

const FORMAT = `Output (JSON): {"input_ids": [...], "top_k": [{"id", "token", "logit", "prob"}, ...] (the next token after the last position, most likely first),
"logits_positions": [...] and "logits": one row of vocab_size logits per listed position (with --logits last|all),
"hidden_states": [L+1][T][H] (with --hidden-states: the embeddings, then each block's output, the last after the final norm)}`;

const OUT = option({ ...OUT_SPEC, path: 'output-file', help: 'output JSON file (default: stdout)' });

export const forwardCommand = defineCommand({
  command: 'forward',
  describe: 'Run one sequence: the most likely next tokens, and on request its logits and hidden states, as JSON',
  options: [...COMPUTE_OPTIONS, MODEL, REVISION, TEXT, IDS, TOP_K, LOGITS, HIDDEN_STATES, OUT, FORCE_FILE],
  conflicts: [[TEXT, IDS]],
  epilogue: FORMAT,
  examples: [
    ['$0 forward --model models/demo --text "The capital of France is"', 'the 10 most likely next tokens'],
    ['$0 forward --model models/demo --ids 1,5,9 --logits all --hidden-states --out f.json', 'every position\'s logits and hidden states'],
  ],
  check: (v) => {
    if (v.text === undefined && v.ids === undefined) throw new UserError('forward: give the input with --text "..." or --ids 1,2,3');
  },
  run: async (v, ctx) => {
    const { OUTPUT_FILES } = await import('../../io/output-dir.ts');
    claimFile(v.out, OUTPUT_FILES.forward, v.force, ctx.inputs);
    const { checkIds, parseIds, runForward } = await import('../../model/inspect.ts');
    const ids = v.ids !== undefined ? parseIds(v.ids) : undefined;
    if (ids) checkIds(ids, v.model);
    await setup({ ...v, quiet: ctx.quiet });
    emitJson(await runForward({ model: v.model, text: v.text, ids, topK: v.topK, logits: v.logits, hiddenStates: v.hiddenStates }), v.out);
  },
});
