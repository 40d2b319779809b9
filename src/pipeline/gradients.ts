/**
 * Gradients of the calibration loss with respect to every decoder-layer weight (the `gradients` input of
 * a method: Taylor+). The loss is the mean negative log-likelihood of each calibration prompt's next
 * tokens (every real position but the last predicts the one after it), summed over all prompts' tokens;
 * gradients are accumulated micro-batch by micro-batch, so they are those of the whole set's mean.
 *
 * tfjs has gradients for its own ops only, not for the native backend's fused kernels (MkaLinear,
 * MkaDecoderLayer, ...). The runtime runs the gradient pass where the backend profile says every op has
 * a gradient (runtime/backend.ts onGradientBackend: the current backend, or WebAssembly for the native
 * one), on float32 copies of the weights. The whole model, its gradients and a
 * micro-batch's activations are held at once (micro-batches shrink to fit the memory, or WebAssembly's
 * 4 GB heap): meant for small models (the demo models, stories260K); a model whose weights and one
 * prompt's activations cannot fit stops with one line before any work.
 */
import { tf } from '../runtime/tf.ts';
import { forward } from '../model/forward.ts';
import { expectedTensors, splitLayerName } from '../model/config.ts';
import { modelFromTensors, parameterCount, readHfWeight, type LlamaModel } from '../model/model.ts';
import { availableMemory, gb, RUNTIME_OVERHEAD } from '../model/memory-estimate.ts';
import { gradientMemory, onGradientBackend } from '../runtime/backend.ts';
import { UserError } from '../runtime/errors.ts';
import { flagOf, type WeightGradients } from '../compress/methods/method.ts';
import { taylor } from '../compress/methods/taylor.ts';
import { MICRO_BATCH } from '../compress/options.ts';

/**
 * ∂(mean calibration NLL)/∂W for every decoder-layer tensor of `model` on the calibration prompts `ids`
 * (token ids, BOS included), `microBatch` prompts at a time.
 */
export async function weightGradients(model: LlamaModel, ids: number[][], opts: { microBatch?: number; log?: (msg: string) => void } = {}): Promise<WeightGradients> {
  const c = model.config;
  const tokens = ids.reduce((a, r) => a + Math.max(0, r.length - 1), 0);
  if (tokens === 0) throw new UserError('taylor: the calibration prompts have no token to predict (each needs 2 tokens or more)');
  const T = Math.max(...ids.map((r) => r.length));
  const params = parameterCount(c);
  // Bytes a prompt row holds for the backward pass: per layer its activations and attention scores and
  // probabilities (nH·T² each), and the logits with their log-softmax; doubled for the gradients' own.
  const rowBytes = 8 * (c.num_hidden_layers * (T * (8 * c.hidden_size + 4 * c.intermediate_size) + 2 * c.num_attention_heads * T * T) + 3 * T * c.vocab_size);
  const fixed = 12 * params + RUNTIME_OVERHEAD; // float32 weights, their gradients and the sums of them
  const avail = availableMemory();
  const where = gradientMemory(); // where the pass runs: the current backend, or wasm when it has fused kernels
  const heap = where.heapLimit;
  const budget = Math.min(avail ?? Infinity, heap ?? Infinity) - fixed;
  if (budget < rowBytes) {
    const bound = heap !== null && (avail === null || heap <= avail) ? ` (the ${where.backend} heap's ${gb(heap)})` : '';
    throw new UserError(`taylor: gradients need about ${gb(fixed + rowBytes)} (float32 weights and gradients of ${(params / 1e6).toFixed(1)}M parameters, one ${T}-token prompt's activations) but ${gb(fixed + Math.max(0, budget))} is available${bound}; use a smaller ${flagOf(taylor.parameters.maxTokens)}, or magnitude, shortgpt or sleb on this model`);
  }
  const micro = Math.max(1, Math.min(opts.microBatch ?? MICRO_BATCH.default, Math.floor(budget / 2 / rowBytes)));
  // float32 copies in Hugging Face layout, read before any backend switch
  const names = [...expectedTensors(c).keys()];
  const values = new Map(names.map((n) => [n, readHfWeight(model, n)] as const));
  const shapes = expectedTensors(c);
  opts.log?.(`taylor: gradients of the calibration loss over ${ids.length} prompts (${tokens} predicted tokens, ${micro} per batch)`);
  const { value, backend } = await onGradientBackend(() => {
    const tensors = new Map<string, tf.Tensor>();
    const vars: tf.Variable[] = [];
    const nameOf = new Map<string, string>(); // variable name → weight name
    for (const n of names) {
      const t = tf.tensor(values.get(n)!, shapes.get(n)!);
      if (splitLayerName(n)) {
        const v = tf.variable(t, true);
        t.dispose();
        tensors.set(n, v);
        vars.push(v);
        nameOf.set(v.name, n);
      } else {
        tensors.set(n, t);
      }
    }
    const copy = modelFromTensors(c, tensors);
    const sums = new Map<string, Float64Array>();
    let loss = 0;
    try {
      for (let b0 = 0; b0 < ids.length; b0 += micro) {
        const rows = ids.slice(b0, b0 + micro);
        const B = rows.length, Tb = Math.max(...rows.map((r) => r.length));
        const padded = rows.map((r) => [...r, ...new Array(Tb - r.length).fill(0)]);
        const targets = new Int32Array(B * Tb), weights = new Float32Array(B * Tb);
        rows.forEach((r, b) => {
          for (let t = 0; t + 1 < r.length; t++) {
            targets[b * Tb + t] = r[t + 1];
            weights[b * Tb + t] = 1 / tokens;
          }
        });
        const target = tf.tensor1d(targets, 'int32'), weight = tf.tensor1d(weights);
        try {
          const { value: l, grads } = tf.variableGrads(() => {
            const { logits } = forward(copy, padded, { logits: 'all' });
            const logp = tf.logSoftmax(logits!.reshape([B * Tb, c.vocab_size])); // [B*T, V]
            const picked = tf.sum(tf.mul(logp, tf.oneHot(target, c.vocab_size)), -1); // [B*T]
            return tf.neg(tf.sum(tf.mul(picked, weight))) as tf.Scalar;
          }, vars);
          loss += l.dataSync()[0];
          l.dispose();
          for (const v of vars) {
            const g = grads[v.name];
            const name = nameOf.get(v.name)!;
            const acc = sums.get(name) ?? new Float64Array(g.size);
            const d = g.dataSync();
            for (let k = 0; k < d.length; k++) acc[k] += d[k];
            sums.set(name, acc);
          }
          Object.values(grads).forEach((g) => g.dispose());
        } finally {
          target.dispose();
          weight.dispose();
        }
      }
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
    return { loss, grads: new Map([...sums].map(([n, g]) => [n, Float32Array.from(g)] as const)) };
  });
  return { backend, loss: value.loss, tokens, grads: value.grads };
}
