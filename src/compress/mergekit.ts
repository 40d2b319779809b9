/**
 * A plan as a mergekit config (mergekit.yaml beside merge.json), for users who build models with
 * mergekit. A plan that only removes layers is mergekit's `passthrough` method over slices of the
 * layers kept (`layer_range` is [first, last + 1)); `mergekit-yaml mergekit.yaml OUT` then writes the
 * same tensors. A plan with merged layers is written as comments saying why mergekit cannot build it:
 * a merged layer blends several layers of one model, and mergekit's slices take each input model once
 * per output tensor (its merge tasks key their input tensors by model, mergekit/plan.py), so two
 * layers of the same model cannot be combined in one slice.
 */
import type { CompressionPlan } from './merge-plan.ts';
import { flag } from '../runtime/options.ts';
import { OUT } from '../io/output-options.ts';
import { MODEL } from '../model/options.ts';
import { PLAN } from '../weights/options.ts';

/** Contiguous runs [first, last + 1) of the original layers a removal-only plan keeps, or null when the plan merges. */
export function passthroughSlices(plan: CompressionPlan): [number, number][] | null {
  const kept: number[] = [];
  for (const l of plan.layers) {
    if (l.sources.length !== 1 || l.sources[0].weight !== 1 || l.normsFrom !== l.sources[0].layer) return null;
    kept.push(l.sources[0].layer);
  }
  const slices: [number, number][] = [];
  for (const k of kept) {
    const last = slices[slices.length - 1];
    if (last && last[1] === k) last[1] = k + 1;
    else slices.push([k, k + 1]);
  }
  return slices;
}

const fmt = (w: number) => (Number.isInteger(w) ? String(w) : w.toFixed(6));

/** mergekit.yaml for `plan` applied to `model` (the path or hub id mergekit should read), stored as `dtype`. */
export function mergekitYaml(plan: CompressionPlan, model: string, dtype: string): string {
  const ref = JSON.stringify(model); // a JSON string is a valid YAML scalar
  const removed = plan.originalLayers - plan.layers.length;
  const slices = passthroughSlices(plan);
  const head = `# ${model}: ${removed} of ${plan.originalLayers} decoder layers removed by mka's ${plan.method} (merge.json has the plan).`;
  if (slices) {
    return [
      head,
      '# mergekit-yaml mergekit.yaml OUT writes the same tensors: passthrough copies the slices below as they are.',
      'slices:',
      ...slices.flatMap(([a, b]) => ['  - sources:', `      - model: ${ref}`, `        layer_range: [${a}, ${b}]`]),
      'merge_method: passthrough',
      `dtype: ${dtype}`,
      '',
    ].join('\n');
  }
  const layers = plan.layers.map((l, k) => {
    const mix = l.sources.length === 1 && l.sources[0].weight === 1 ? String(l.sources[0].layer) : l.sources.map((s) => `${fmt(s.weight)} × ${s.layer}`).join(' + ');
    return `#   ${k} <- ${mix}${l.sources.length > 1 || l.normsFrom !== l.sources[0].layer ? ` (norms from ${l.normsFrom}${plan.blendNorms ? ', blended' : ''})` : ''}`;
  });
  return [
    head,
    '#',
    '# mergekit cannot express this plan, so this file holds no config. Its merged layers are weighted sums of',
    '# several layers of the same model, and a mergekit slice takes each input model once per output tensor (its',
    '# merge tasks key their input tensors by model, mergekit/plan.py): two layers of one model cannot be blended',
    '# in one slice, whichever merge_method is used. Build the model from merge.json with mka instead:',
    `#   mka compress ${flag(MODEL)} ${model} ${flag(PLAN)} merge.json ${flag(OUT)} OUT`,
    '#',
    '# Output layer <- original layers (weight × layer):',
    ...layers,
    '',
  ].join('\n');
}
