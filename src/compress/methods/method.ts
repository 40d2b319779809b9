/**
 * The interface every compression method implements. A method says what it needs (`inputs`, and with
 * `needs` which of them its parameters make it read) and which parameters it takes (`parameters`, one
 * declaration each: option name, type, default, range, help); the pipeline (pipeline/plan-targets.ts)
 * computes exactly those inputs and hands them over typed, and the command line, --config checks,
 * merge.json and a sweep's key all derive from the declarations (methods/registry.ts).
 */
import type { LlamaConfig } from '../../model/config.ts';
import type { SyncTensorSource } from '../../weights/source.ts';
import type { CompressionPlan } from '../merge-plan.ts';
import type { SimilarityOptions } from '../similarity/index.ts';

/** A similarity matrix of a model's layers, the metric it is, and the options it was computed with. */
export interface SimilarityInput {
  matrix: (number | null)[][];
  metric: string;
  options: SimilarityOptions;
}

/** The last real token's hidden state of every calibration prompt at each block boundary b = 0..L ([n·H] each). */
export interface LastStates {
  n: number;
  hiddenSize: number;
  states: Float32Array[];
}

/** Runs candidate plans of the original model on the calibration prompts. */
export interface PlanScorer {
  /** Calibration prompts each plan runs on. */
  prompts: number;
  /** Per plan: the mean negative log-likelihood per predicted token of the calibration prompts. */
  loss(plans: readonly CompressionPlan[]): Promise<number[]>;
  /**
   * Per plan: the mean over prompts of the cosine between its model's final hidden states (after the
   * final norm, each prompt's [T·H] flattened) and the original model's.
   */
  similarity(plans: readonly CompressionPlan[]): Promise<number[]>;
}

/** Gradients of the mean calibration loss with respect to every decoder-layer weight (HF names and layout). */
export interface WeightGradients {
  /** The tfjs backend they were computed on. */
  backend: string;
  /** Mean negative log-likelihood per predicted token. */
  loss: number;
  tokens: number;
  grads: Map<string, Float32Array>;
}

/** Everything a method can ask for, by name. */
export interface MethodInputs {
  /** The similarity matrix of the original model's layers (the metric --metric names): MKA. */
  similarity: SimilarityInput;
  /** Block Influence of each layer, 1 − cos(input, output) averaged over real tokens: ShortGPT. */
  blockInfluence: number[];
  /** Last-token states at every block boundary: the angular distance. */
  lastStates: LastStates;
  /** Candidate plans run on the calibration prompts: SLEB, LaCo. */
  scorer: PlanScorer;
  /** Gradients of the calibration loss, each prompt cut to its first `maxTokens` tokens if given (computed when called): Taylor+. */
  gradients: (opts?: { maxTokens?: number }) => Promise<WeightGradients>;
  /** The original model's weights, one tensor at a time (no calibration): magnitude. */
  weights: SyncTensorSource;
  /** The similarity matrix of a partly compressed model (same metric and options): MKA --iterative / adjacent. */
  recalibrate: (plan: CompressionPlan) => Promise<SimilarityInput>;
}

export type InputName = keyof MethodInputs;

/** What a method is given: the model's config and exactly the inputs it declared. */
export interface MethodContext<K extends InputName = InputName> {
  config: LlamaConfig;
  /** Biases of merged layers: blended like the weights (default) or the first layer's kept (the released code's). */
  biases: 'blend' | 'keep';
  log: (msg: string) => void;
  inputs: Pick<MethodInputs, K>;
}

export type ParameterValue = number | boolean | string;

/**
 * One parameter of a method, declared once: the command-line option (also its --config key and its
 * name in error messages), its type, default, range and help.
 */
export interface ParameterSpec<V extends ParameterValue = ParameterValue> {
  /** Option name without dashes (`blend-norms`); methods prefix their own (`laco-threshold`). */
  option: string;
  type: 'number' | 'integer' | 'boolean' | 'choice';
  default: V;
  /** The values a `choice` takes. */
  choices?: readonly string[];
  /** Inclusive range of a number. */
  min?: number;
  max?: number;
  /** Also takes the word `auto`: the method chooses at run time (and says what it chose). */
  auto?: boolean;
  help: string;
}

/** An option as messages name it (`--laco-threshold`), from its declaration. */
export function flagOf(spec: Pick<ParameterSpec, 'option'>): string {
  return `--${spec.option}`;
}

export interface CompressionMethod<P extends Record<string, ParameterValue> = Record<string, ParameterValue>, K extends InputName = InputName> {
  name: string;
  /** One line for --help and the model card. */
  description: string;
  /** The paper (or code) the method follows. */
  citation: string;
  /** Every input the method may read. */
  inputs: readonly K[];
  /** The inputs it reads with these parameters (default: all of `inputs`); the pipeline computes these ahead. */
  needs?(params: P): readonly K[];
  /** Its parameters by name. */
  parameters: { [N in keyof P]-?: ParameterSpec<P[N]> };
  /** A plan that removes `remove` (at least 1) layers from the original model. */
  plan(ctx: MethodContext<K>, remove: number, params: P): Promise<CompressionPlan>;
}

/** A method with its parameter and input types erased (the registry holds all of them). */
export type AnyMethod = CompressionMethod<Record<string, ParameterValue>, InputName>;

/** Types a method for the registry; its parameters `P` and inputs `K` are checked where it is written. */
export function defineMethod<P extends Record<string, ParameterValue>, K extends InputName>(m: CompressionMethod<P, K>): AnyMethod {
  return m as unknown as AnyMethod;
}
