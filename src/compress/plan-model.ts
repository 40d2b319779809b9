/**
 * A plan's model over a loaded original, without building a copy of it: a candidate that a method
 * scores (LaCo's merges) runs as a model whose kept layers are the original's own weights under their
 * new index (resident ones shared, streamed ones read from the original's checkpoint when the forward
 * pass reaches them) and whose merged layers are mixed once, in float32, exactly as planSource mixes
 * them (float64 sums rounded once). `dispose()` frees only what the view made. `materialize` builds a
 * plan's model (planSource) as a copy in memory.
 */
import { tf } from '../runtime/tf.ts';
import { expectedTensors, layerTensorShapes, splitLayerName } from '../model/config.ts';
import { layOutForBackend, modelFromTensors, readHfWeight, type LlamaModel } from '../model/model.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Weight } from '../model/ops.ts';
import { copiedFrom, mixArrays, planConfig, type CompressionPlan } from './merge-plan.ts';
import type { SyncTensorSource } from '../weights/source.ts';

/** The plan's model over `original` (see the file comment); dispose it, never the original, when done. */
export function planModel(original: LlamaModel, plan: CompressionPlan): { model: LlamaModel; dispose(): void } {
  const config = planConfig(original.config, plan);
  const shapes = expectedTensors(config);
  const layerShapes = layerTensorShapes(config);
  const tensors = new Map<string, tf.Tensor>();
  const packed = new Map<string, Weight>();
  const owned: tf.Tensor[] = [];
  const renamed = new Map<string, string>(); // view name → original name, for tensors read from the checkpoint
  try {
    for (const name of shapes.keys()) {
      const from = copiedFrom(plan, name);
      if (from !== null) {
        const t = original.tensors.get(from), w = original.packed?.get(from);
        if (t) tensors.set(name, t);
        else if (w) packed.set(name, w);
        else renamed.set(name, from);
        continue;
      }
      const { layer, suffix } = splitLayerName(name)!;
      const data = mixArrays(plan.layers[layer].sources.map((s) => ({ data: readHfWeight(original, `model.layers.${s.layer}.${suffix}`), weight: s.weight })));
      const t = tf.tensor(data, layerShapes.get(suffix)!);
      owned.push(t);
      tensors.set(name, t);
    }
  } catch (e) {
    owned.forEach((t) => t.dispose());
    throw e;
  }
  const ckpt = original.checkpoint;
  const view: Checkpoint | null = ckpt && renamed.size ? {
    dir: ckpt.dir,
    names: () => [...renamed.keys()],
    info: (name) => ckpt.info(renamed.get(name) ?? name),
    read: (name) => ckpt.read(renamed.get(name) ?? name),
    ...(ckpt.readRaw ? { readRaw: (name: string) => ckpt.readRaw!(renamed.get(name) ?? name) } : {}),
    bytesOnDisk: () => ckpt.bytesOnDisk(),
    close: () => {}, // the original's
  } : null;
  if (renamed.size && !view) throw new Error('planModel: the original has neither the tensors nor a checkpoint to read them from');
  return {
    model: { config, dir: null, tensors, packed, checkpoint: view, stats: { forwardCalls: 0, layerLoads: 0 }, compute: original.compute },
    dispose: () => owned.forEach((t) => t.dispose()),
  };
}

/** Builds the compressed model in memory from a plan's tensor source (for recalibration, evaluation or tests). */
export function materialize(source: SyncTensorSource): LlamaModel {
  const tensors = new Map<string, tf.Tensor>();
  for (const name of source.names) tensors.set(name, tf.tensor(source.read(name), source.shape(name)));
  return layOutForBackend(modelFromTensors(source.config, tensors));
}
