/**
 * The library side of `mka info`, `mka forward` and `mka generate`: load, run, and shape the output.
 */
import { loadModel, disposeModel } from './model.ts';
import { forward } from './forward.ts';
import { generate } from './generate.ts';
import { openCheckpoint } from '../io/checkpoint.ts';
import { readConfig } from './config.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { UserError } from '../runtime/errors.ts';
import { checkModelFits, sequenceWorkload } from './memory-estimate.ts';

export { modelInfo, type ModelInfo } from './info.ts';

/** Parses "1,2,3" into token ids. */
export function parseIds(s: string): number[] {
  const ids = s.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  if (!ids.length || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new UserError(`--ids "${s}": expected comma-separated non-negative integers`);
  return ids;
}

export interface ForwardJson {
  input_ids: number[];
  logits: number[][];
  hidden_states?: number[][][];
}

/** Runs one sequence (text through the model's tokenizer, or ids) and returns logits and hidden states. */
export async function runForward(opts: { model: string; text?: string; ids?: number[]; hiddenStates?: boolean }): Promise<ForwardJson> {
  let ids = opts.ids;
  if (!ids) {
    if (opts.text === undefined) throw new UserError('give --text or --ids');
    ids = (await loadTokenizer(opts.model)).encode(opts.text);
  }
  checkModelFits('forward', opts.model, sequenceWorkload(ids.length, 'all'), { streamable: false });
  const model = loadModel(opts.model);
  try {
    if (ids.length > model.config.max_position_embeddings) {
      throw new UserError(`input has ${ids.length} tokens, more than max_position_embeddings (${model.config.max_position_embeddings})`);
    }
    const r = forward(model, [ids], { hiddenStates: opts.hiddenStates });
    const out: ForwardJson = { input_ids: ids, logits: (r.logits!.arraySync() as number[][][])[0] };
    r.logits!.dispose();
    if (r.hiddenStates) {
      out.hidden_states = r.hiddenStates.map((h) => (h.arraySync() as number[][][])[0]);
      r.hiddenStates.forEach((h) => h.dispose());
    }
    return out;
  } finally {
    disposeModel(model);
  }
}

export interface GenerateJson {
  input_ids: number[];
  output_ids: number[];
  text: string;
}

/** Generates a continuation of `prompt` (BOS as the tokenizer is configured; an empty prompt is BOS alone). */
export async function runGenerate(opts: { model: string; prompt: string; maxNewTokens?: number; temperature?: number; seed?: number }): Promise<GenerateJson> {
  const tok = await loadTokenizer(opts.model);
  const ids = tok.encode(opts.prompt);
  if (!ids.length) throw new UserError('the prompt encodes to no tokens and the tokenizer adds no BOS: give a non-empty --prompt');
  checkModelFits('generate', opts.model, sequenceWorkload(ids.length, 'last', opts.maxNewTokens ?? 64), { streamable: false });
  const model = loadModel(opts.model);
  try {
    const out = generate(model, ids, { maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, seed: opts.seed });
    return { input_ids: ids, output_ids: out, text: tok.decode(out, { skipSpecial: true }) };
  } finally {
    disposeModel(model);
  }
}
