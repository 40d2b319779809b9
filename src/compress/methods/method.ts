/**
 * The interface every compression method implements, and what it is given. A method turns the
 * calibration (and, for MKA, the similarity matrix) into a plan that removes `remove` layers. What
 * every method is given is the context; what only one method takes (MKA's strategy, blending the
 * norms) it declares itself as its parameters, with their defaults, as mergekit's merge methods do.
 */
import type { LlamaConfig } from '../../model/config.ts';
import type { Calibration } from '../calibration.ts';
import type { CompressionPlan } from '../merge-plan.ts';
import type { SimilarityOptions } from '../similarity/index.ts';

export interface MethodContext {
  config: LlamaConfig;
  /** Calibration of the original model (present when a method needs its hidden states: angular). */
  calibration?: Calibration;
  /** Block influence of each layer (ShortGPT), from the calibration or a stored analysis. */
  blockInfluence?: number[];
  /** Similarity matrix of the original model's layers (MKA), from the similarity stage or a stored analysis. */
  similarity?: (number | null)[][];
  /** The metric that matrix is (similarity/registry.ts: npib, cka). */
  metric?: string;
  similarityOptions: SimilarityOptions;
  /** Biases of merged layers: blended with λ (default) or layer i's kept (the released code). */
  biases?: 'blend' | 'keep';
  /** Recalibrates a partly compressed model and recomputes its similarity matrix, same metric (for `adjacent`). */
  recalibrate?: (plan: CompressionPlan) => Promise<{ similarity: (number | null)[][] }>;
  log: (msg: string) => void;
}

export interface CompressionMethod<P extends object = object> {
  name: string;
  description: string;
  needsCalibration: boolean;
  needsSimilarity: boolean;
  /** The method's own parameters and their defaults ({} for a method without any). */
  defaults: P;
  /**
   * Whether the method plans from the similarity matrix and the block influence alone (what a sweep's
   * analysis.json stores), without the calibration's hidden states or the model.
   */
  plansFromSummary(params: P): boolean;
  /** A plan that removes `remove` layers from the original model. */
  plan(ctx: MethodContext, remove: number, params: P): Promise<CompressionPlan>;
}
