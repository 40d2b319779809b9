/**
 * The options of the model itself and of the commands that run it once (`mka info`, `forward`,
 * `generate`), declared once (contract 5, src/runtime/options.ts). No tfjs here: the CLI reads these
 * to parse a command line before it loads anything.
 */
import { option } from '../runtime/options.ts';
import { MAX_SEED } from '../runtime/random.ts';

/** The model every command reads: a directory in Hugging Face layout, a GGUF model file, or a hub id (resolved to a directory before the checks). */
export const MODEL = option({
  name: 'model', option: 'model', type: 'string', required: true, path: 'model', hub: 'model',
  help: 'the model: a Hugging Face model directory, a GGUF model file, or a hub id (org/name) downloaded into the hub cache',
});

/** --model without `required` (a command that can read something else instead). */
export const MODEL_OR_OTHER = option({ ...MODEL, required: false });

/** The revision of a hub id given as --model, and the one taken without it (not the spec's default: it means nothing for a local model). */
export const DEFAULT_REVISION = 'main';
export const REVISION = option({
  name: 'revision', option: 'revision', type: 'string',
  help: `with a hub id as --model (org/name): its branch, tag or commit (default ${DEFAULT_REVISION})`,
});

/** Holds one decoder layer in memory at a time, read from disk when a pass reaches it. */
export const STREAMING = option({
  name: 'streaming', option: 'streaming', type: 'boolean', default: false,
  help: 'one decoder layer in memory at a time (read from disk on every forward pass)',
});

/** Which logits `mka forward` writes: none (the top-k only), the last position's, or every position's. */
export const FORWARD_LOGITS = ['none', 'last', 'all'] as const;
export type ForwardLogits = (typeof FORWARD_LOGITS)[number];

export const TEXT = option({ name: 'text', option: 'text', type: 'string', empty: true, help: 'text to tokenize (BOS as the tokenizer is configured)' });
export const IDS = option({ name: 'ids', option: 'ids', type: 'string', help: 'comma-separated token ids instead of --text' });
export const TOP_K = option({ name: 'topK', option: 'top-k', type: 'integer', min: 1, default: 10, help: 'most likely next tokens listed in top_k' });
export const LOGITS = option({
  name: 'logits', option: 'logits', type: 'choice', choices: FORWARD_LOGITS, default: 'none',
  help: 'also write logits: of the last position, or of every position ([T][vocab], large for long inputs)',
});
export const HIDDEN_STATES = option({ name: 'hiddenStates', option: 'hidden-states', type: 'boolean', default: false, help: 'also write hidden_states [L+1][T][H] (HF convention)' });

export const PROMPT = option({ name: 'prompt', option: 'prompt', type: 'string', empty: true, default: '', help: 'prompt text; empty starts from BOS' });
export const MAX_NEW_TOKENS = option({ name: 'maxNewTokens', option: 'max-new-tokens', type: 'integer', min: 1, default: 64, help: 'tokens to generate at most' });
export const TEMPERATURE = option({ name: 'temperature', option: 'temperature', type: 'number', min: 0, default: 0, help: '0 = greedy; >0 samples' });
export const SAMPLING_SEED = option({ name: 'seed', option: 'seed', type: 'integer', min: 0, max: MAX_SEED, default: 1, help: 'sampling seed' });
