/**
 * The interface every compression method implements, and what it is given. A method turns the
 * calibration (and, for MKA, the similarity matrix) into a plan that removes `remove` layers. What
 * every method is given is the context; what only one method takes (MKA's strategy, blending the
 * norms) it declares itself as its parameters, with their defaults, as mergekit's merge methods do.
 */
import type { LlamaConfig } from '../../model/config.ts';
import type { Calibration } from '../calibration.ts';
import type { CompressionPlan } from '../plan.ts';
import type { SimilarityOptions, SimilarityResult } from '../similarity/index.ts';

export interface MethodContext {
  config: LlamaConfig;
  /** Calibration of the original model (present when the method needs it). */
  calibration?: Calibration;
  /** Similarity of the original model's layers (present when the method needs it). */
  similarity?: SimilarityResult;
  similarityOptions: SimilarityOptions;
  /** Biases of merged layers: blended with λ (default) or layer i's kept (the released code). */
  biases?: 'blend' | 'keep';
  /** Recalibrates a partly compressed model and recomputes its similarity (for `adjacent`). */
  recalibrate?: (plan: CompressionPlan) => Promise<{ calibration: Calibration; similarity: SimilarityResult }>;
  log: (msg: string) => void;
}

export interface CompressionMethod<P extends object = object> {
  name: string;
  description: string;
  needsCalibration: boolean;
  needsSimilarity: boolean;
  /** The method's own parameters and their defaults ({} for a method without any). */
  defaults: P;
  /** A plan that removes `remove` layers from the original model. */
  plan(ctx: MethodContext, remove: number, params: P): Promise<CompressionPlan>;
}
