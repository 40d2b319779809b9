/**
 * Training the demo model: seeded initial weights, batches of tokenized training documents, and Adam
 * on next-token cross-entropy through mka's own `forward` (whose ops are all differentiable). Answer
 * letters (the token after "Answer:") can weigh more in the loss, since they are what the benchmark
 * scores. Optionally LayerDrop (Fan et al., 2020): each step skips every decoder layer with a small
 * probability, which makes the trained model degrade gradually, not abruptly, when layers are removed.
 */
import { tf } from '../../src/runtime/tf.ts';
import { type LlamaConfig, expectedTensors, keepLayers, parseConfig } from '../../src/model/config.ts';
import { type LlamaModel, modelFromTensors } from '../../src/model/model.ts';
import { forward } from '../../src/model/forward.ts';
import { mulberry32, normal } from '../../src/runtime/random.ts';
import { deriveSeed } from '../../src/eval/mmlu/demo-benchmark.ts';

export interface DemoModelShape {
  vocabSize: number;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  maxPositions: number;
}

/** The demo model's Llama config (Hugging Face field names). */
export function demoConfig(s: DemoModelShape): LlamaConfig {
  return parseConfig({
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: s.vocabSize,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    hidden_act: 'silu',
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  }, 'demo config');
}

/**
 * Initial weights as trainable variables, from a seeded generator (identical on every platform): norms
 * 1, q_proj and k_proj normal(0, 0.02), every other matrix normal(0, std); the output projections of
 * attention and MLP (o_proj, down_proj) scaled by 1/sqrt(2·layers) as in GPT-2. A std larger than
 * the usual 0.02 (about 0.5/sqrt(hidden)) shortens the plateau before a small model learns to bind
 * answer letters to choices.
 */
export function initialWeights(config: LlamaConfig, seed: number, std = 0.02): Map<string, tf.Variable> {
  const rand = mulberry32(deriveSeed(seed, 'init'));
  const residual = std / Math.sqrt(2 * config.num_hidden_layers);
  const vars = new Map<string, tf.Variable>();
  for (const [name, shape] of expectedTensors(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith('norm.weight')) data.fill(1);
    else {
      const sd = /q_proj|k_proj/.test(name) ? 0.02 : /o_proj|down_proj/.test(name) ? residual : std;
      for (let i = 0; i < n; i++) data[i] = sd * normal(rand);
    }
    vars.set(name, tf.tidy(() => tf.variable(tf.tensor(data, shape), true)));
  }
  return vars;
}

/**
 * One training batch: rows of input ids (right-padded with 0 to equal length), the next-token
 * targets, per-target loss weights (0 on padding) and which targets are answer letters.
 */
export interface Batch {
  inputs: number[][];
  targets: number[][];
  weights: number[][];
  answers: number[][];
}

export interface BatcherOptions {
  batch: number;
  seqLen: number;
  bosId: number;
  /** Ids of the answer letters' tokens and of the token(s) "Answer:" ends with. */
  answerIds: number[];
  answerPrefixIds: number[];
  answerWeight: number;
}

/**
 * Makes batches from a document stream: each row is BOS + the first seqLen tokens of one document,
 * right-padded to the longest row of the batch; the target after an "Answer:" token, when it is a
 * letter, gets `answerWeight`, every other real target 1, padding 0.
 */
export function documentBatcher(next: () => string, encode: (text: string) => number[], o: BatcherOptions): () => Batch {
  const letters = new Set(o.answerIds), prefixes = new Set(o.answerPrefixIds);
  return () => {
    const rows = Array.from({ length: o.batch }, () => [o.bosId, ...encode(next())].slice(0, o.seqLen + 1));
    const T = Math.max(...rows.map((r) => r.length)) - 1;
    const b: Batch = { inputs: [], targets: [], weights: [], answers: [] };
    for (const row of rows) {
      const isAnswer = row.slice(1).map((t, i) => (letters.has(t) && prefixes.has(row[i]) ? 1 : 0));
      const pad = new Array<number>(T - (row.length - 1)).fill(0);
      b.inputs.push([...row.slice(0, -1), ...pad]);
      b.targets.push([...row.slice(1), ...pad]);
      b.weights.push([...isAnswer.map((a) => (a ? o.answerWeight : 1)), ...pad]);
      b.answers.push([...isAnswer, ...pad]);
    }
    return b;
  };
}

export interface TrainSettings {
  steps: number;
  lr: number;
  warmup: number;
  /** The learning rate stays at lr until this step (at least warmup), then decays (cosine) to lr·minLrRatio at the last step. */
  decayStart?: number;
  minLrRatio: number;
  /** Gradients are scaled down to this global norm when larger. */
  clipNorm: number;
  /** Probability of skipping each decoder layer in a step (0: never), from step layerDropStart on. */
  layerDrop: number;
  layerDropStart?: number;
  seed: number;
}

/** Learning rate at `step` (0-based): linear warm-up, constant until decayStart, then cosine decay. */
export function learningRateAt(step: number, s: TrainSettings): number {
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  const start = Math.max(s.warmup, s.decayStart ?? s.warmup);
  if (step < start) return s.lr;
  const t = Math.min(1, (step - start) / Math.max(1, s.steps - 1 - start));
  return s.lr * (s.minLrRatio + (1 - s.minLrRatio) * 0.5 * (1 + Math.cos(Math.PI * t)));
}

/** Adam whose learning rate the schedule sets before every step. */
class ScheduledAdam extends tf.AdamOptimizer {
  setLearningRate(lr: number): void {
    this.learningRate = lr;
  }
}

export interface StepResult {
  step: number;
  /** Weighted training loss of the step. */
  loss: number;
  /** Mean cross-entropy of the answer letters in the batch (0 when there are none). */
  answerLoss: number;
  lr: number;
  layersUsed: number;
}

/** A model over the given layers of the variables (renumbered 0..k-1); shares the variables. */
function modelOverLayers(config: LlamaConfig, vars: Map<string, tf.Variable>, layers: number[]): LlamaModel {
  return modelFromTensors({ ...config, num_hidden_layers: layers.length }, keepLayers<tf.Tensor>(vars, layers));
}

/**
 * Trains the variables in place for `s.steps` steps, calling `onStep` after each. Deterministic for a
 * given batch stream, seed and backend.
 */
export async function trainModel(
  config: LlamaConfig,
  vars: Map<string, tf.Variable>,
  nextBatch: (step: number) => Batch,
  s: TrainSettings,
  onStep: (r: StepResult) => void | Promise<void>,
): Promise<void> {
  const opt = new ScheduledAdam(s.lr, 0.9, 0.95, 1e-8);
  const dropRand = mulberry32(deriveSeed(s.seed, 'layerdrop'));
  const V = config.vocab_size;
  try {
    for (let step = 0; step < s.steps; step++) {
      const batch = nextBatch(step);
      const all = Array.from({ length: config.num_hidden_layers }, (_, i) => i);
      const p = step >= (s.layerDropStart ?? 0) ? s.layerDrop : 0;
      let layers = p > 0 ? all.filter(() => dropRand() >= p) : all;
      if (layers.length === 0) layers = all;
      const model = modelOverLayers(config, vars, layers);
      const used = [...model.tensors.values()] as tf.Variable[];
      const B = batch.inputs.length, T = batch.inputs[0].length;
      const targets = tf.tensor1d(batch.targets.flat(), 'int32');
      const weights = tf.tensor1d(batch.weights.flat(), 'float32');
      const isAnswer = tf.tensor1d(batch.answers.flat(), 'float32');
      let answerLoss: tf.Scalar | null = null;
      const lr = learningRateAt(step, s);
      opt.setLearningRate(lr);
      const { value, grads } = tf.variableGrads(() => {
        const { logits } = forward(model, batch.inputs);
        const logp = tf.logSoftmax(logits!.reshape([B * T, V])); // [B*T, V]
        const nll = tf.neg(tf.sum(tf.mul(logp, tf.oneHot(targets, V)), -1)); // [B*T]
        answerLoss = tf.keep(tf.div(tf.sum(tf.mul(nll, isAnswer)), tf.maximum(tf.sum(isAnswer), 1e-9)) as tf.Scalar);
        return tf.div(tf.sum(tf.mul(nll, weights)), tf.sum(weights)) as tf.Scalar;
      }, used);
      tf.tidy(() => {
        const norm = tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
        const scale = tf.minimum(1, tf.div(s.clipNorm, tf.add(norm, 1e-6)));
        // tfjs's Adam keys its moments by position in this list: always pass every variable, in
        // order, with zero gradients for the layers this step skipped.
        opt.applyGradients([...vars.values()].map((v) => ({
          name: v.name, tensor: grads[v.name] ? tf.mul(grads[v.name], scale) : tf.zerosLike(v),
        })));
      });
      const loss = (await value.data())[0];
      const aLoss = (await answerLoss!.data())[0];
      for (const t of [value, answerLoss!, targets, weights, isAnswer, ...Object.values(grads)]) t.dispose();
      await onStep({ step, loss, answerLoss: aLoss, lr, layersUsed: layers.length });
    }
  } finally {
    opt.dispose();
  }
}
