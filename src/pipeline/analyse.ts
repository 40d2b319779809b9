/**
 * The first two stages of the compression pipeline (pipeline/plan-targets.ts): the calibration prompts, and
 * one calibration pass of a loaded model with the similarity of its layers computed from it.
 */
import type { LlamaModel } from '../model/model.ts';
import { bosUnderAddBosTokenFalse, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { encodeHead } from '../tokenizer/bounded.ts';
import { loadMmlu } from '../eval/mmlu/data.ts';
import { checkSeededDraw, sampleCalibrationPrompts } from '../compress/calibration-prompts.ts';
import { buildPrompt, checkNtrain, formatExample } from '../eval/mmlu/prompt.ts';
import { UserError } from '../runtime/errors.ts';
import { readTextFile } from '../io/read.ts';
import { progress } from '../runtime/progress.ts';
import { calibrate, calibrationTarget, defaultPerSubject, type Calibration, type Representation } from '../compress/calibration.ts';
import { DEFAULT_METRIC, DEFAULT_SIMILARITY, degenerateKernelWarning, getSimilarityMetric, resolveOptions, type MetricResult, type SimilarityOptions } from '../compress/similarity/index.ts';
import { protocolSettings, releasedCalibrationPrompts, type Protocol } from '../compress/protocol.ts';
import { flag } from '../runtime/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE, CALIB_SUBJECTS, PER_SUBJECT } from '../compress/options.ts';
import { K_ENTROPY } from '../compress/similarity/options.ts';

export interface CalibrationSource {
  /** MMLU directory (Hendrycks layout) to draw prompts from. */
  data?: string;
  /** Or a text file with one prompt per line. */
  calibrationFile?: string;
  subjects?: number;
  /** Questions per subject; default: 1, or enough for calibrationTarget(similarity) prompts. */
  perSubject?: number;
  seed?: number;
  /** The similarity options the prompts are for (they set the default prompt count). */
  similarity?: Partial<SimilarityOptions>;
  /** The similarity metric (compress/similarity/registry.ts); default npib. */
  metric?: string;
  /** mka's conventions (default) or the released code's (compress/protocol.ts). */
  protocol?: Protocol;
  /**
   * Dev examples before each MMLU calibration question (default 0: the question alone, as the paper's
   * similarity stage). Quantizers take 5, so that calibration sees the long few-shot contexts evaluation runs.
   */
  shots?: number;
  /**
   * The questions to calibrate on (labels `subject#index`) instead of drawing them: `compress --quantize`
   * gives the quantizer the questions the merge drew.
   */
  questions?: readonly string[];
  /** Questions per subject when none is given: the default for the caller's purpose (a quantizer's count), instead of the similarity's. */
  defaultPerSubject?: (subjects: number) => number;
}

export interface AnalysisOptions extends CalibrationSource {
  representation?: Representation;
  maxPositions?: number;
  microBatch?: number;
  /** Compute the similarity matrix (MKA needs it; the baselines don't). */
  withSimilarity?: boolean;
  quiet?: boolean;
  log?: (msg: string) => void;
}

/**
 * Token ids of the calibration prompts (BOS as the tokenizer adds it), and the questions per subject drawn.
 * `maxTokens` (the model's max_position_embeddings, which no pass reads past): a longer prompt is tokenized
 * only as far as one token past it, so that its consumers still see it is longer and cut it.
 */
export function calibrationPrompts(tokenizer: Tokenizer, src: CalibrationSource, maxTokens = Infinity): { ids: number[][]; labels: string[]; perSubject: number | null } {
  let perSubject: number | null = null;
  let texts: { text: string; label: string }[];
  const draw = protocolSettings(src.protocol).draw === 'python' ? releasedCalibrationPrompts : sampleCalibrationPrompts;
  if (draw === sampleCalibrationPrompts && src.seed !== undefined) checkSeededDraw(src.seed); // a file's prompts too: the seed's range is the protocol's
  if (src.calibrationFile) {
    const raw = readTextFile(src.calibrationFile, 'calibration file');
    texts = raw.split(/\r?\n/).filter((l) => l.trim()).map((text, i) => ({ text, label: `line ${i + 1}` }));
    if (texts.length < 2) throw new UserError(`${src.calibrationFile}: needs at least 2 non-empty lines (one prompt per line)`);
  } else if (src.data) {
    const data = loadMmlu(src.data);
    const subjects = src.subjects ?? data.subjects.length;
    perSubject = src.perSubject
      ?? (src.defaultPerSubject ? src.defaultPerSubject(subjects) : defaultPerSubject(subjects, calibrationTarget({ ...DEFAULT_SIMILARITY, ...src.similarity })));
    const shots = src.shots ?? 0;
    if (shots > 0) checkNtrain(data, shots);
    const drawn = src.questions ? src.questions.map((label) => questionOf(data, label, src.data!)) : draw(data, { subjects: src.subjects, perSubject, seed: src.seed });
    texts = drawn.map((p) => ({
      text: shots > 0 ? buildPrompt(data, data.test.get(p.subject)!.find((q) => q.index === p.index)!, shots) : p.text,
      label: `${p.subject}#${p.index}`,
    }));
  } else {
    throw new UserError(`calibration needs ${flag(CALIBRATION_DATA)} MMLU_DIR or ${flag(CALIBRATION_FILE)} FILE`);
  }
  // released: what the released code's add_bos_token=False gives (Llama 3 keeps its BOS)
  const addBos = protocolSettings(src.protocol).calibrationBos ? undefined : bosUnderAddBosTokenFalse(tokenizer);
  return { ids: texts.map((t) => encodeHead(tokenizer, t.text, maxTokens + 1, { addBos })), labels: texts.map((t) => t.label), perSubject };
}

/** The test question a calibration label (`subject#index`) names, as the draw gives it. */
function questionOf(data: ReturnType<typeof loadMmlu>, label: string, dir: string): { subject: string; index: number; text: string } {
  const at = label.lastIndexOf('#');
  const subject = label.slice(0, at), index = Number(label.slice(at + 1));
  const q = data.test.get(subject)?.find((x) => x.index === index);
  if (!q) throw new UserError(`${dir}: has no test question ${label} (a calibration question drawn before); was the directory changed?`);
  return { subject, index, text: formatExample(q, false) };
}

/**
 * The similarity options for n calibration prompts, checked before any forward pass: a UserError names
 * the option and the fix (an unknown --metric too). The k-NN entropy's k is clamped to n − 1 with a
 * logged note. Metrics without the diffusion kernel (cka) take any prompt count.
 */
export function similarityOptionsFor(n: number, src: CalibrationSource, log: (msg: string) => void = () => {}): SimilarityOptions {
  if (!getSimilarityMetric(src.metric ?? DEFAULT_METRIC).usesKernel) return resolveOptions(Infinity, src.similarity);
  const more = src.calibrationFile ? `more lines in ${src.calibrationFile}` : src.perSubject ? `a larger ${flag(PER_SUBJECT)} (or leave it unset)` : `more ${flag(CALIB_SUBJECTS)}`;
  resolveOptions(Infinity, src.similarity); // options wrong whatever the prompt count
  let o: SimilarityOptions;
  try {
    o = resolveOptions(n, src.similarity);
  } catch (e) {
    throw e instanceof UserError ? new UserError(`${e.message.replace(/; fix the option or use more samples$/, '')}: ${n} calibration prompts are too few; use ${more}, or smaller values`) : e;
  }
  if (o.kEntropy > n - 1) log(`similarity: ${n} calibration prompts: the k-NN entropy uses k = ${n - 1}, not ${flag(K_ENTROPY)} ${o.kEntropy} (needs ${o.kEntropy + 1} prompts)`);
  return o;
}

export interface Analysis {
  calibration: Calibration;
  /** The similarity metric's name, and what it computed (when the similarity was asked for): its matrix is what MKA merges by. */
  metric: string;
  scores?: MetricResult;
  similarityOptions: SimilarityOptions;
  labels: string[];
  seconds: { calibration: number; similarity: number };
}

/** Calibrates a loaded model on prompt ids and (optionally) computes the layer similarity. */
export function analyzeIds(model: LlamaModel, ids: number[][], labels: string[], opts: AnalysisOptions): Analysis {
  const log = opts.log ?? (() => {});
  const metric = getSimilarityMetric(opts.metric ?? DEFAULT_METRIC);
  const similarityOptions = opts.withSimilarity ? similarityOptionsFor(ids.length, opts, log) : { ...DEFAULT_SIMILARITY, ...opts.similarity };
  const t0 = performance.now();
  const bar = progress('calibration', model.config.num_hidden_layers, { unit: 'layers', quiet: opts.quiet });
  const calibration = calibrate(model, ids, {
    representation: opts.representation, maxPositions: opts.maxPositions, microBatch: opts.microBatch,
    layerStates: protocolSettings(opts.protocol).layerStates, onProgress: () => bar.tick(),
  });
  bar.done(`(${calibration.n} prompts, ${calibration.tokens} tokens, 1 forward pass)`);
  const t1 = performance.now();
  let result: MetricResult | undefined;
  if (opts.withSimilarity) {
    const sbar = progress('similarity', metric.steps(calibration.layers), { unit: 'steps', quiet: opts.quiet });
    result = metric.compute(calibration.grams, calibration.n, similarityOptions, () => sbar.tick());
    sbar.done();
    for (const u of result.undefinedPairs) log(`similarity: ${metric.name.toUpperCase()}(${u.i}, ${u.j}) undefined: ${u.reason}`);
    const warning = result.npib && degenerateKernelWarning(result.npib.kernel);
    if (warning) log(warning);
  }
  return {
    calibration, metric: metric.name, scores: result, similarityOptions, labels,
    seconds: { calibration: (t1 - t0) / 1000, similarity: (performance.now() - t1) / 1000 },
  };
}

