/**
 * Calibration: one forward pass over the whole calibration set collects, for every decoder layer,
 * what the similarity stage and the pruning baselines need, and nothing more:
 *  - a Gram matrix G = R Rᵀ (n×n, float64) of each block's output representation R [n, D];
 *  - the last real token's hidden state at every block boundary (for the angular-distance baseline);
 *  - each block's Block Influence, 1 − cos(input, output) averaged over real tokens (ShortGPT).
 *
 * The layer used is the output of each decoder block (the residual stream after block i, before the
 * final norm), so layer i of the similarity matrix is decoder layer i; with layerStates 'input' it is
 * the block's input, as in the paper's released code.
 *
 * The pass is layer-major (forward.ts): the whole set goes through block 0, then block 1, ..., in
 * micro-batches inside a block, so a streamed model reads each layer once. Representations of a
 * prompt at a layer:
 *  - `padded`: its hidden states zero-padded or cut to `maxPositions` (512) positions, one vector;
 *  - `last`: the last real token; `mean`: the mean over real tokens.
 */
import { tf } from '../runtime/tf.ts';
import { forward } from '../model/forward.ts';
import type { LlamaModel } from '../model/model.ts';
import { UserError } from '../runtime/errors.ts';
import type { Workload } from '../model/memory-estimate.ts';
import { MAX_POSITIONS, MICRO_BATCH, REPRESENTATION } from './options.ts';
import { checkOption } from '../runtime/options.ts';
import type { SimilarityOptions } from './similarity/index.ts';

export { REPRESENTATIONS, type Representation } from './options.ts';
import { REPRESENTATIONS, type Representation } from './options.ts';
import { tidyValues } from '../runtime/read-out.ts';
import { nonFiniteStatesError } from '../model/nonfinite.ts';

export interface CalibrationOptions {
  representation?: Representation;
  /** Positions kept by the `padded` representation (prompts are cut to this many tokens). */
  maxPositions?: number;
  /** Rows per micro-batch inside each layer (memory bound); default 8. */
  microBatch?: number;
  /**
   * Layer l's representation: the output of block l (default), or its input (the released code's
   * hidden_states[l]: the embeddings for l = 0).
   */
  layerStates?: 'output' | 'input';
  /** Called after each block with (blocks done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface Calibration {
  n: number;
  layers: number;
  hiddenSize: number;
  representation: Representation;
  /** Per decoder layer, the n×n Gram matrix of its output (or, with layerStates 'input', input) representations (row-major). */
  grams: Float64Array[];
  /** Per block boundary b = 0..L (input of block b; b = L is the last block's output), [n*H] last-token states. */
  lastStates: Float32Array[];
  /** Per block, mean over real tokens of 1 − cos(input, output). */
  blockInfluence: number[];
  tokens: number;
  forwardPasses: number;
}

/**
 * Calibration prompts the similarity stage needs so that none of its estimators runs short of samples:
 * kEntropy + 1 (the k-NN entropy's neighbours; 51 by default), and more than kMi and dims.
 */
export function calibrationTarget(o: Pick<SimilarityOptions, 'kEntropy' | 'kMi' | 'dims'>): number {
  return Math.max(o.kEntropy + 1, o.kMi + 1, o.dims + 2);
}

/**
 * Questions per subject when none is asked for: 1, the paper's choice (57 prompts on MMLU's 57 subjects),
 * or as many as it takes for `subjects` subjects to give `target` prompts (11 on the demo's 5 subjects).
 */
export function defaultPerSubject(subjects: number, target: number): number {
  return Math.max(1, Math.ceil(target / Math.max(1, subjects)));
}

/** Runs the calibration prompts (token ids, BOS included) through the model once. */
export function calibrate(model: LlamaModel, prompts: number[][], opts: CalibrationOptions = {}): Calibration {
  const rep = opts.representation ?? 'padded';
  checkOption(REPRESENTATION, rep);
  if (prompts.length < 2) throw new UserError(`calibration needs at least 2 prompts, got ${prompts.length}`);
  const c = model.config;
  const cut = Math.min(c.max_position_embeddings, rep === 'padded' ? opts.maxPositions ?? MAX_POSITIONS.default : Infinity);
  const rows = prompts.map((p) => p.slice(0, cut));
  if (rows.some((r) => r.length === 0)) throw new UserError('a calibration prompt encodes to no tokens');
  const n = rows.length, H = c.hidden_size, L = c.num_hidden_layers;
  const lengths = rows.map((r) => r.length);
  const T = Math.max(...lengths);
  const ids = rows.map((r) => [...r, ...new Array(T - r.length).fill(0)]);

  const maskData = new Float32Array(n * T);
  lengths.forEach((len, b) => maskData.fill(1, b * T, b * T + len));
  const mask = tf.tensor2d(maskData, [n, T]);
  const lastIdx = tf.tensor1d(lengths.map((len, b) => b * T + len - 1), 'int32');
  const realTokens = lengths.reduce((a, b) => a + b, 0);

  const grams: Float64Array[] = [];
  const lastStates: Float32Array[] = [];
  const blockInfluence: number[] = [];

  const lastOf = (h: tf.Tensor3D) => tidyValues(() => tf.gather(h.reshape([n * T, H]), lastIdx));
  // h with each row's padding positions zeroed, as a copy of its real positions: multiplying by an [n, T, 1]
  // mask costs tfjs's CPU kernels (the native backend's elementwise ops) an index computation per element

  const maskedOf = (h: tf.Tensor3D): tf.Tensor3D => {
    const v = h.dataSync() as Float32Array, out = new Float32Array(n * T * H);
    lengths.forEach((len, b) => out.set(v.subarray(b * T * H, (b * T + len) * H), b * T * H));
    return tf.tensor3d(out, [n, T, H]);
  };
  const representation = (h: tf.Tensor3D): tf.Tensor2D => tf.tidy(() => {
    if (rep === 'last') return tf.gather(h.reshape([n * T, H]), lastIdx) as tf.Tensor2D; // [n, H]
    const masked = maskedOf(h);
    if (rep === 'mean') return tf.div(tf.sum(masked, 1), tf.tensor2d(lengths, [n, 1])) as tf.Tensor2D; // [n, H]
    return masked.reshape([n, T * H]) as tf.Tensor2D; // [n, T*H]; positions past T are zeros and add nothing
  });

  // a state that overflowed float32 (finite but absurd weights) makes its Gram matrix non-finite: refused here, naming the block
  const gramOf = (h: tf.Tensor3D, where: string) => {
    const g = Float64Array.from(tidyValues(() => {
      const r = representation(h);
      return tf.matMul(r, r, false, true); // [n, n]
    }));
    const bad = g.find((x) => !Number.isFinite(x));
    if (bad !== undefined) throw nonFiniteStatesError(model.dir ?? 'the model', bad, where);
    return g;
  };

  try {
    forward(model, ids, {
      logits: 'none',
      microBatch: opts.microBatch ?? MICRO_BATCH.default,
      onBlockInput: (i, x) => {
        if (i === 0) lastStates.push(lastOf(x));
        if (opts.layerStates === 'input') grams.push(gramOf(x, i === 0 ? 'the embeddings' : `block ${i}'s input`));
      },
      onBlockOutput: (i, h, x) => {
        if (opts.layerStates !== 'input') grams.push(gramOf(h, `block ${i}'s output`));
        lastStates.push(lastOf(h));
        const bi = tf.tidy(() => {
          const dot = tf.sum(tf.mul(x, h), -1);
          const norm = (t: tf.Tensor3D) => tf.sqrt(tf.sum(tf.square(t), -1)); // tf.norm's values (|t|² is t·t), without its pow per element
          const cos = tf.div(dot, tf.mul(norm(x), norm(h)).add(1e-12));
          return tf.sum(tf.mul(tf.sub(1, cos), mask)).dataSync()[0];
        });
        blockInfluence.push(bi / realTokens);
        opts.onProgress?.(i + 1, L);
      },
    });
  } finally {
    mask.dispose();
    lastIdx.dispose();
  }
  return { n, layers: L, hiddenSize: H, representation: rep, grams, lastStates, blockInfluence, tokens: realTokens, forwardPasses: 1 };
}

/**
 * What a calibration pass (`mka similarity`, `compress`, a sweep's) needs for the memory estimate:
 * every prompt through every layer, no logits; --micro-batch sets its micro-batches.
 */
export function calibrationWorkload(promptLengths: number[], opts: { microBatch?: number; maxPositions?: number; representation?: string; streaming?: boolean }): Workload {
  const cut = opts.representation === undefined || opts.representation === 'padded' ? opts.maxPositions ?? MAX_POSITIONS.default : Infinity;
  return {
    streaming: opts.streaming ?? false, rows: promptLengths.length, microBatch: opts.microBatch ?? MICRO_BATCH.default,
    seqLen: Math.min(cut, Math.max(1, ...promptLengths)), logits: 'none',
    callbackCopies: 1, // the masked representation, then the block-influence product
    batch: { option: MICRO_BATCH, field: 'microBatch' }, streamable: true,
  };
}
