/**
 * The options of a perplexity evaluation (`mka eval ppl`, and the `ppl` column of `mka sweep`),
 * declared once (contract 5, src/runtime/options.ts). No tfjs here.
 */
import { option } from '../../runtime/options.ts';

export const PPL_TEXT = option({
  name: 'text', option: 'text', type: 'string', path: 'file',
  help: 'UTF-8 text file, evaluated as one token sequence (e.g. WikiText-2 test rows joined by blank lines)',
});
export const PPL_DATASET = option({
  name: 'dataset', option: 'data', type: 'string',
  help: 'hub text dataset instead of --text: its split\'s "text" rows joined by blank lines, as the WikiText-2 recipe',
});
export const PPL_SUBSET = option({ name: 'subset', option: 'subset', type: 'string', help: 'with --data: the dataset\'s subset, e.g. wikitext-2-raw-v1 (needed when several have the split)' });
export const PPL_SPLIT = option({ name: 'split', option: 'split', type: 'string', default: 'test', help: 'with --data: the split' });
/** The default window: 2048 tokens (WikiText-2 in the pruning papers), or the model's context if shorter (so not the spec's default). */
export const DEFAULT_SEQ_LEN = 2048;
export const SEQ_LEN = option({ name: 'seqLen', option: 'seq-len', type: 'integer', min: 2, help: `window length in tokens (default ${DEFAULT_SEQ_LEN}, or the model's context if shorter)` });
export const STRIDE = option({
  name: 'stride', option: 'stride', type: 'integer', min: 1,
  help: 'tokens between window starts (default --seq-len: disjoint windows; smaller gives each scored token more context)',
});

/** What a perplexity run key records of its options (results.ts), as resolved for the model. */
export const PPL_KEY = [SEQ_LEN, STRIDE] as const;
/** The key's field names where they are not the spec's name (keyFields' `as`): existing results directories hold them. */
export const PPL_KEY_FIELDS = { [SEQ_LEN.name]: 'seq_len' };
