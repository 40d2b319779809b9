/**
 * `eval mmlu --log-samples`: samples_mmlu_<subject>.jsonl in lm-eval's --log_samples layout, one line per
 * test question: doc (as cais/mmlu holds it), target (the answer's index), arguments (the prompt as fed,
 * before any cut to the model's context, with each answer letter), resps, acc and lm-eval's hashes. The
 * paper's protocol compares the answer tokens' logits at the end of the prompt rather than scoring
 * loglikelihoods, so each choice's resps hold its logit, and "True" for the arg-max of the four.
 */
import { hashString, PyFloat, pyFloatStr, pyJson } from '../../runtime/python.ts';
import { ANSWER_LETTERS, type MmluData } from './data.ts';
import type { QuestionRecord } from './record.ts';
import { buildPrompt } from './prompt.ts';
import type { AnswerTokens } from './question-plan.ts';

/** The text of samples_mmlu_<subject>.jsonl for a subject's records. */
export function mmluSamplesText(data: MmluData, records: readonly QuestionRecord[], answerTokens: AnswerTokens): string {
  return records.map((r) => {
    const q = data.test.get(r.subject)![r.index];
    const doc = { question: q.question, subject: q.subject, choices: [...q.choices], answer: ANSWER_LETTERS.indexOf(q.answer) };
    const prompt = buildPrompt(data, q, r.ntrainKept);
    const target = String(doc.answer);
    const resps = r.answerLogits.map((l, i) => [pyFloatStr(l), ANSWER_LETTERS[i] === r.prediction ? 'True' : 'False']);
    return pyJson({
      doc_id: r.index, doc, target,
      arguments: Object.fromEntries(ANSWER_LETTERS.map((l, i) => [`gen_args_${i}`, { arg_0: prompt, arg_1: answerTokens === 'space' ? ` ${l}` : l }])),
      resps: resps.map((x) => [x]), filtered_resps: resps, filter: 'none', metrics: ['acc'],
      doc_hash: hashString(pyJson(doc, 2)), prompt_hash: hashString(prompt), target_hash: hashString(target),
      acc: new PyFloat(r.correct ? 1 : 0),
    }) + '\n';
  }).join('');
}
