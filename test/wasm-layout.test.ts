/**
 * Plain WebAssembly holds the decoder's projections as Wᵀ [in, out], laid out once at load, so no
 * forward pass transposes a weight or multiplies by one transposed; everything in Hugging Face
 * layout (export, merges, dropLayers) still reads the source's exact values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { expectedTensors } from '../src/model/config.ts';
import { disposeModel, loadModel, modelFromTensors, readHfWeight } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { checkpointSource, modelSource } from '../src/weights/source.ts';
import { writeHfModel } from '../src/weights/hf-writer.ts';
import { dropLayers } from '../scripts/demo-training/score.ts';
import { writeRandomModel } from './random-model.ts';
import { scratchDir } from './scratch.ts';

const PROJECTION = /(_proj\.weight|lm_head\.weight)$/;

/**
 * Runs f with the wasm BatchMatMul kernel wrapped to count its calls: those multiplying by a
 * transposed b (the slow product), and those whose b is a laid-out weight (2-D, named by shape).
 */
function countProducts(f: () => void, layoutShapes: Set<string>): { transposedB: number; byWeight: number } {
  const original = tf.getKernel('BatchMatMul', 'wasm')!;
  const counts = { transposedB: 0, byWeight: 0 };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    ...original,
    kernelFunc: (args) => {
      const b = (args.inputs as { b: tf.TensorInfo }).b;
      if ((args.attrs as { transposeB?: boolean }).transposeB) counts.transposedB++;
      if (b.shape.length === 2 && layoutShapes.has(b.shape.join('x'))) counts.byWeight++;
      return original.kernelFunc(args);
    },
  });
  try {
    f();
  } finally {
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel(original);
  }
  return counts;
}

test('plain wasm: projections laid out once at load, the forward never transposes a weight, export gives the source bytes', async () => {
  const info = await initBackend('wasm');
  assert.equal(info.nativeMatMul, false);
  const tmp = scratchDir('wasm-layout');
  try {
    const dir = join(tmp, 'm');
    await writeRandomModel(dir, { hidden_size: 48, intermediate_size: 80 }, 3);
    const before = tf.memory().numTensors;
    const model = loadModel(dir);
    const shapes = expectedTensors(model.config);
    const projections = [...shapes.keys()].filter((n) => PROJECTION.test(n));
    assert.equal(projections.length, 3 * 7 + 1);
    for (const name of projections) {
      const w = model.packed!.get(name)!;
      assert.equal(w.transposed, true, name);
      assert.deepEqual(w.tensor.shape, [...shapes.get(name)!].reverse(), name);
      assert.equal(model.tensors.has(name), false, name);
    }
    assert.equal(model.checkpoint, null, 'every weight is resident, so the checkpoint is closed');
    assert.equal(tf.memory().numTensors - before, shapes.size, 'one tensor per weight: no Hugging Face copy is kept');

    // No weight-shaped transpose in a pass (the per-call path transposes each [out, in] weight).
    const ids = [Array.from({ length: 20 }, (_, t) => (5 * t + 3) % model.config.vocab_size)];
    const weightShapes = new Set(projections.map((n) => shapes.get(n)!.join('x')));
    const profile = await tf.profile(() => forward(model, ids, { logits: 'all' }).logits!);
    const transposed = profile.kernels.filter((k) => k.name === 'Transpose' && weightShapes.has(k.inputShapes[0]?.join('x') ?? ''));
    assert.deepEqual(transposed.map((k) => k.inputShapes[0]), []);
    const laidOut = new Set(projections.map((n) => [...shapes.get(n)!].reverse().join('x')));
    const products = countProducts(() => tf.dispose(forward(model, ids, { logits: 'all' }).logits!), laidOut);
    assert.deepEqual(products, { transposedB: 0, byWeight: projections.length }, 'every weight product is x·W by the laid-out Wᵀ, none x·Wᵀ');

    // The same logits, bit for bit, as the Hugging Face layout transposed per call (in-memory model).
    const ckpt = checkpointSource(dir);
    const hf = modelFromTensors(model.config, new Map([...shapes].map(([n, s]) => [n, tf.tensor(ckpt.read(n), s)])));
    const a = forward(model, ids, { logits: 'all' }).logits!, b = forward(hf, ids, { logits: 'all' }).logits!;
    assert.deepEqual(a.dataSync(), b.dataSync());
    tf.dispose([a, b]);
    disposeModel(hf);

    // Export reads Hugging Face layout back: the same bytes as the source checkpoint.
    const out = join(tmp, 'out');
    await writeHfModel(modelSource(model), out, { dtype: 'float32' });
    const back = checkpointSource(out);
    for (const name of shapes.keys()) assert.deepEqual(back.readRaw(name)!.bytes, ckpt.readRaw(name)!.bytes, name);
    back.close();

    // dropLayers renumbers laid-out weights too: layer 2 of the source is layer 1 of the result.
    const dropped = dropLayers(model, [1]);
    assert.deepEqual(readHfWeight(dropped, 'model.layers.1.mlp.down_proj.weight'), ckpt.read('model.layers.2.mlp.down_proj.weight'));
    const d = forward(dropped, ids).logits!;
    assert.equal(d.shape[d.shape.length - 1], model.config.vocab_size);
    d.dispose();
    ckpt.close();

    tf.dispose(profile.result as tf.Tensor);
    disposeModel(model);
    assert.equal(tf.memory().numTensors, before);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
