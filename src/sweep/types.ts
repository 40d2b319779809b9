/**
 * The types every part of a sweep shares (its options, and a row of results.csv), in a file that imports
 * none of them, so the sweep's modules depend on it and not on each other in a circle.
 */
import type { PipelineOptions } from '../pipeline/plan-targets.ts';
import type { MetricsMap, PairedTest } from '../eval/tasks/metrics.ts';

export interface SweepOptions extends PipelineOptions {
  model: string;
  data: string;
  methods: string[];
  remove: number[];
  ntrain: number;
  limit?: number;
  /** MMLU subjects to evaluate (default all). */
  evalSubjects?: string[];
  batchSize?: number;
  out: string;
  /** Point shown in categories.png, e.g. "mka:2" (default: the largest MKA count). */
  chosen?: string;
  /** Also write each compressed model directory to OUT/models/ (e.g. to export it). */
  keepModels?: boolean;
  /** Extra fields for run.json (backend, command line). */
  runInfo?: Record<string, unknown>;
  /** A text corpus: adds each point's perplexity on it (the `ppl` column), as `mka eval ppl` computes it. */
  ppl?: { text: string; seqLen?: number; stride?: number };
  /** Tasks each point is evaluated on (default ['mmlu'], the paper's MMLU on `data`); see src/eval/tasks/registry.ts. */
  tasks?: string[];
  /** Local data (file or directory) of each task but mmlu (hub ids are resolved by the caller). */
  taskData?: Record<string, string>;
  /** Few-shot examples of the tasks but mmlu (default: each task's own; mmlu_lmeval takes --ntrain). */
  numFewshot?: number;
  /**
   * Quantizations crossed with every method and count (`none`: the 16-bit model; otherwise a spec such as
   * `gptq:w4g32`, src/quant/registry.ts), calibrated on the sweep's calibration questions (5-shot, as
   * `mka quantize`). Default ['none'].
   */
  quantize?: string[];
  /** Stops the sweep after the current MMLU batch (EvaluationInterrupted); finished points and subjects stay saved. */
  signal?: AbortSignal;
}

/** What a sweep's results depend on and a queue job carries: its options without callbacks, signal or run info. */
export type SweepSettings = Omit<SweepOptions, 'log' | 'runInfo' | 'signal'>;

/** One row of results.csv. */
export interface SweepPoint {
  method: string;
  layers_removed: number;
  layers: number;
  /** Share of the layers removed. */
  compression_ratio: number;
  /** The quantization (spec string, or 'none'). */
  quantize: string;
  /** The model's size in bytes: float weights at 16 bits, packed ones as stored (src/quant/size.ts modelBytes). */
  bytes: number;
  /** Share of the original's bytes (at 16 bits) saved: 1 − bytes / original bytes; layers removed and bits together. */
  byte_compression_ratio: number;
  /** Every task's metrics (task → metric → value, stderr, n); the columns below repeat MMLU's. */
  metrics: MetricsMap;
  /** Per task and metric, the paired test of this point against the original on the same documents (null for the original). */
  paired: Record<string, Record<string, PairedTest>> | null;
  /** MMLU (the paper's) accuracy over questions, and the rest of its summary (null when the sweep has no mmlu task). */
  mmlu: number | null;
  mmlu_macro: number | null;
  stem: number | null;
  humanities: number | null;
  social_sciences: number | null;
  other: number | null;
  perplexity: number | null;
  /** Perplexity on the sweep's text corpus (null without one). */
  ppl: number | null;
  agreement: number | null;
  kl: number | null;
  seconds: number;
}
