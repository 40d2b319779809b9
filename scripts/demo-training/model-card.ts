/**
 * The demo model's training log (training-log.json) and model card (README.md), written by
 * scripts/train-demo.ts next to the weights.
 */
import type { LlamaConfig } from '../../src/model/config.ts';
import type { DemoScores } from './score.ts';

export interface TrainingLog {
  command: string;
  seed: number;
  benchmarkSeed: number;
  backend: string;
  settings: Record<string, unknown>;
  parameters: number;
  trainSeconds: number;
  /** User CPU seconds of the training stage (all threads). */
  trainCpuSeconds: number;
  evalSeconds: number;
  totalSeconds: number;
  tokensSeen: number;
  /** Mean weighted loss and answer-letter loss over each 10 steps. */
  lossCurve: { step: number; loss: number; answerLoss: number; lr: number }[];
  /** 5-shot test accuracy of the written weights. */
  accuracy: DemoScores;
  /** Accuracy without the last k layers, by k. */
  dropLastLayers: Record<string, number>;
  /** Accuracy without layer i alone, by i. */
  dropOneLayer: number[];
  weightsBytes: number;
}

/** The architecture fields the card states (test/demo.test.ts compares them with config.json). */
export function cardArchitecture(c: LlamaConfig): Record<string, number | string> {
  return {
    model_type: c.model_type,
    num_hidden_layers: c.num_hidden_layers,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    vocab_size: c.vocab_size,
    max_position_embeddings: c.max_position_embeddings,
    torch_dtype: c.torch_dtype,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** How the card describes the LayerDrop setting of the last stage. */
export function layerDropText(p: number): string {
  return p > 0
    ? `with LayerDrop ${p} (each step skips each layer with that probability, so that removing layers degrades the model gradually)`
    : 'without LayerDrop (every step trains every layer, so the model never sees a layer skipped)';
}
const minutes = (s: number) => `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;

/** README.md for the model directory. */
export function modelCard(c: LlamaConfig, log: TrainingLog): string {
  const subjects = Object.entries(log.accuracy.subjects);
  const arch = cardArchitecture(c);
  const s = log.settings;
  return `# mka demo model

A small Llama-architecture model that mka trains itself (\`scripts/train-demo.ts\`), so that the whole
pipeline (evaluate, compress by merging layers, export) runs offline on a fresh clone. It knows only
the demo benchmark's world: it is a test object, not a language model for any other use.

## How it was made

    ${log.command}

- **Data**: the demo benchmark (Hendrycks MMLU layout, benchmark seed ${log.benchmarkSeed}; \`npm start\` generates it into \`data/demo-mmlu\`) has
  ${subjects.length} subjects: ${subjects.map(([k]) => k).join(', ')}. Training text comes from the same
  generators on a separate random stream: few-shot blocks in the evaluation's prompt format and fact
  sheets about the invented countries. No dev or test question (stem and choices in that order) appears
  in it; stems such as "What is 7 + 5?" or a country's capital recur with other choices, as facts recur
  between pretraining text and MMLU.
- **Tokenizer**: byte-pair encoding learned on training text, ${log.settings.tokenizerVocab} tokens, Llama/SentencePiece style
  (spaces as "▁", a "▁" in front of the text, \`<s>\` prepended), so "A" alone and the "A" after
  "Answer:" are the same token.
- **Training**: ${log.settings.steps} steps of Adam (lr ${s.lr}, ${s.warmup} warm-up steps, constant, then cosine decay to
  ${s.minLrRatio}× over the last stage; gradient norm clipped at ${s.clipNorm}; initial weights normal(0, ${s.initStd}), q/k 0.02) on
  next-token cross-entropy with answer letters weighted ${s.answerWeight}×, in three stages:
  1. ${s.bareSteps} steps of ${s.singleBatch} lone "bare" matching questions (a number, then four numbers to find it
     among). This is where the model learns to bind an answer letter to a choice: trained on full
     few-shot prompts from the start, models of this size stayed at chance through runs of up to
     1,400 steps.
  2. ${s.singleSteps} steps of ${s.singleBatch} lone questions of every subject (and of a training-only matching subject).
  3. The rest: ${s.batch} sequences of ${s.seqLen} tokens per step, few-shot blocks in the evaluation's prompt format
     (and fact sheets), ${layerDropText(Number(s.layerDrop))}.

  ${(log.tokensSeen / 1e6).toFixed(2)}M tokens in all. Seed ${log.seed}; backend ${log.backend}. Training took
  ${minutes(log.trainSeconds)} (${minutes(log.trainCpuSeconds)} of CPU time), evaluation ${minutes(log.evalSeconds)}.
- **Size**: ${(log.parameters / 1e6).toFixed(2)}M parameters; model.safetensors is ${(log.weightsBytes / 1e6).toFixed(1)} MB (${s.dtype}).

## Architecture

\`\`\`json
${JSON.stringify(arch, null, 2)}
\`\`\`

## Accuracy (5-shot, test set, chance 25%)

| subject | correct | accuracy |
| --- | --- | --- |
${subjects.map(([k, v]) => `| ${k} | ${v.correct}/${v.total} | ${pct(v.accuracy)} |`).join('\n')}
| **all** | ${subjects.reduce((n, [, v]) => n + v.correct, 0)}/${subjects.reduce((n, [, v]) => n + v.total, 0)} | **${pct(log.accuracy.accuracy)}** |

Scored by mka's own MMLU evaluator (Hendrycks' 5-shot prompts; the prediction is the largest next-token
logit after "Answer:" among the tokens of A, B, C and D): \`mka eval mmlu --model models/demo --data data/demo-mmlu\`
recomputes this table.

## Removing layers

| layers removed | accuracy |
| --- | --- |
| none | ${pct(log.accuracy.accuracy)} |
${Object.entries(log.dropLastLayers).map(([k, v]) => `| last ${k} | ${pct(v)} |`).join('\n')}
${log.dropOneLayer.map((v, i) => `| layer ${i} only | ${pct(v)} |`).join('\n')}

## Reproducing

Rerun the command above: with the same seed, options and backend it writes the same weights, byte for
byte (two runs of this command on 2 cores gave identical model.safetensors). On another backend or BLAS
floating-point sums differ in the last bits, so the weights differ and the accuracy is close but not
identical. training-log.json has the loss curve (mean of every 10 steps) and all accuracies.
`;
}
