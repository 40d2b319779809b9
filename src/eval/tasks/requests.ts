/**
 * A document's loglikelihood requests as lm-eval 0.4 builds them for a multiple-choice task without a
 * chat template (`ConfigurableTask.fewshot_context`, `build_qa_turn`, `construct_requests`):
 *
 *   context = description + Σ shots (doc_to_text + target_delimiter + answer + fewshot_delimiter) + doc_to_text(doc)
 *   requests = (context, target_delimiter + choice) for each choice
 *
 * and for a multiple-input task (winogrande) one context per choice, each followed by the same
 * continuation (target_delimiter + doc_to_target). The gold index is doc_to_target's (an index, or the
 * position of its text among the choices), or for a multiple-input task doc_to_text's.
 */
import { UserError } from '../../runtime/errors.ts';
import type { HintedRequest } from '../scoring/loglikelihood.ts';
import type { Doc, Subtask, TaskDefinition } from './task.ts';

/** What lm-eval scores for one document. */
export interface DocRequests {
  /** The requests, in choice order, with a prefix hint for caching. */
  requests: HintedRequest[];
  /** lm-eval's doc_to_choice (whose lengths acc_norm divides by). */
  choices: string[];
  /** Index of the correct choice (-100 when the target is not among the choices, as lm-eval). */
  gold: number;
  /** lm-eval's doc_to_target, as its samples record it. */
  target: number | string;
  /** The text before the document's own prompt (description + shots), and where each shot starts in it. */
  prefix: string;
  shotStarts: number[];
}

/** The answer text of a few-shot example (build_qa_turn: c[a] for an index, else the text). */
function answerText(task: TaskDefinition, doc: Doc): string {
  const a = task.docToTarget(doc);
  if (task.multipleInput) return String(a);
  if (typeof a === 'number') {
    const c = task.docToChoices(doc);
    if (a < 0 || a >= c.length) throw new UserError(`few-shot example's target ${a} is not an index of its ${c.length} choices`);
    return c[a];
  }
  return a;
}

/** The text of a few-shot example: its prompt, the target delimiter, its answer, the few-shot delimiter. */
export function shotText(task: TaskDefinition, doc: Doc): string {
  const text = task.docToText(doc);
  const q = task.multipleInput ? task.docToChoices(doc)[text as number] : text as string;
  const has = task.docToTarget(doc) !== ''; // build_qa_turn: an answer is given unless the target is ''
  return has ? q + (task.targetDelimiter ?? ' ') + answerText(task, doc) + (task.fewshotDelimiter ?? '\n\n') : q;
}

/** Longest common prefix of strings. */
function commonPrefix(xs: readonly string[]): string {
  if (xs.length === 0) return '';
  let n = xs[0].length;
  for (const x of xs) {
    let i = 0;
    while (i < n && i < x.length && x[i] === xs[0][i]) i++;
    n = i;
  }
  return xs[0].slice(0, n);
}

/**
 * The requests of `doc` after the few-shot examples `shots`. Requests of one document share a cached
 * prefix (their common context); with a first_n sampler every document shares the description and
 * shots, so those are the hint instead.
 */
export function docRequests(task: TaskDefinition, doc: Doc, shots: readonly Doc[]): DocRequests {
  const description = task.description?.(doc) ?? '';
  let prefix = description;
  const shotStarts: number[] = [];
  for (const s of shots) {
    shotStarts.push(prefix.length);
    prefix += shotText(task, s);
  }
  const delim = task.targetDelimiter ?? ' ';
  const choices = task.docToChoices(doc);
  const target = task.docToTarget(doc);
  const text = task.docToText(doc);
  let contexts: string[], continuations: string[], gold: number;
  if (task.multipleInput) {
    contexts = choices.map((c) => prefix + c);
    continuations = choices.map(() => delim + String(target));
    gold = typeof text === 'number' && text < choices.length ? text : -100;
  } else {
    contexts = choices.map(() => prefix + (text as string));
    continuations = choices.map((c) => delim + c);
    gold = typeof target === 'number' ? (target < choices.length ? target : -100) : choices.indexOf(target);
    if (gold === -1) gold = -100;
  }
  const hint = task.sampler === 'first_n' && prefix !== '' ? prefix : commonPrefix(contexts);
  return {
    requests: contexts.map((context, i) => ({ context, continuation: continuations[i], prefix: hint })),
    choices, gold, target, prefix, shotStarts,
  };
}

/**
 * The requests of document `index` of `sub` after its few-shot examples `shots` (docRequests), with a value
 * the task cannot use (an answer key that is no choice label, a sentence without its blank) refused in one
 * line naming the file and the document (the few-shot one, when one of those is at fault) and the fix.
 */
export function subtaskDocRequests(task: TaskDefinition, sub: Subtask, index: number, shots: readonly Doc[] = []): DocRequests {
  try {
    return docRequests(task, sub.docs[index], shots);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    const fails = (f: () => unknown) => {
      try {
        f();
        return false;
      } catch {
        return true;
      }
    };
    const shot = shots.find((s) => fails(() => shotText(task, s)));
    const where = shot ? `${sub.fewshotSource ?? sub.source}: ${sub.name} few-shot document ${sub.fewshotDocs.indexOf(shot)} (drawn for document ${index})` : `${sub.source}: ${sub.name} document ${index}`;
    throw new UserError(`${where}: ${e.message}; fix the document or remove it from the data`);
  }
}
