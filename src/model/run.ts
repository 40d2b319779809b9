/**
 * The library side of `mka info`, `mka forward` and `mka generate`: load, run, and shape the output.
 */
import { statSync } from 'node:fs';
import { loadModel, disposeModel, parameterCount } from './model.ts';
import { forward } from './forward.ts';
import { generate } from './generate.ts';
import { openCheckpoint } from '../io/checkpoint.ts';
import { readConfig } from './config.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { UserError } from '../runtime/errors.ts';
import { checkModelFits, sequenceWorkload } from '../runtime/memory-estimate.ts';

export interface ModelInfo {
  dir: string;
  architecture: string;
  model_type: string;
  layers: number;
  hidden_size: number;
  intermediate_size: number;
  heads: number;
  kv_heads: number;
  head_dim: number;
  vocab_size: number;
  max_position_embeddings: number;
  parameters: number;
  dtypes: string[];
  bytes_on_disk: number;
  tied_embeddings: boolean;
  rope: string;
}

/** Architecture, sizes, parameter count, storage dtypes and size on disk of a model directory. */
export function modelInfo(dir: string): ModelInfo {
  const c = readConfig(dir);
  const ckpt = openCheckpoint(dir);
  try {
    const dtypes = new Set(ckpt.names().map((n) => ckpt.info(n)!.dtype));
    return {
      dir,
      architecture: c.architectures[0],
      model_type: c.model_type,
      layers: c.num_hidden_layers,
      hidden_size: c.hidden_size,
      intermediate_size: c.intermediate_size,
      heads: c.num_attention_heads,
      kv_heads: c.num_key_value_heads,
      head_dim: c.head_dim,
      vocab_size: c.vocab_size,
      max_position_embeddings: c.max_position_embeddings,
      parameters: parameterCount(c),
      dtypes: [...dtypes],
      bytes_on_disk: ckpt.bytesOnDisk() + statSync(`${dir}/config.json`).size,
      tied_embeddings: c.tie_word_embeddings,
      rope: `theta ${c.rope_theta}${c.rope_scaling ? `, ${c.rope_scaling.rope_type} x${c.rope_scaling.factor}` : ''}`,
    };
  } finally {
    ckpt.close();
  }
}

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
