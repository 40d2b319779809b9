/**
 * The outputs of an MMLU run and how it resumes.
 *
 * A results directory holds:
 *   run-key.json           what the results depend on (model fingerprint, ntrain, limit, answer tokens, ...)
 *   subjects/<s>.json      one finished subject's per-question records, written atomically when it ends,
 *                          stamped with a hash of the run key (a file of another run is never reused)
 *   .mka-output.json       marks the directory as mka's MMLU results (src/io/output-dir.ts)
 *   mmlu.csv, summary.json the scores, written at the end from the subject files only (no timestamps),
 *                          so an interrupted and resumed run ends with the same bytes as an uninterrupted one
 *   run.json               timings and how the run went (backend, batch size, resumed subjects)
 *   lm_eval_results.json   the scores in lm-evaluation-harness's results layout (lm-eval.ts)
 * A rerun with the same key loads finished subjects; a different key is refused (use another
 * directory, or --fresh to discard the old results).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { readRegularFile } from '../../io/read.ts';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { atomicWriteText } from '../../io/atomic.ts';
import { isOwnOutput, writeMarker } from '../../io/output-dir.ts';
import { UserError } from '../../runtime/errors.ts';
import { CATEGORY_LABELS, categoryOf, subcategoryOf } from './categories.ts';
import type { MmluData } from './data.ts';
import type { QuestionRecord } from './record.ts';
import type { SubjectPlan } from './question-plan.ts';
import { aggregateScores } from './scores.ts';
import { lmEvalResults } from './lm-eval.ts';
import { accStderr } from '../tasks/metrics.ts';

export { modelFingerprint } from '../fingerprint.ts';
import { flag } from '../../runtime/options.ts';
import { OUT } from '../../io/output-options.ts';
import { FRESH, LIMIT } from './options.ts';
import { readChecked } from '../../io/schema.ts';
import { SUBJECT_RESULT } from './result-files.ts';
import type { MmluSummary, ScoreRow } from './summary.ts';

export type { MmluSummary, ScoreRow };

/** What a run's results depend on; results are reused only under an identical key. */
export type RunKey = Record<string, unknown>;

/**
 * Run-key fields added after results directories were first written, with the value a key without
 * them meant, so such a directory still resumes: bos (prompts begin with BOS as the tokenizer adds it).
 */
const KEY_DEFAULTS: RunKey = { bos: true };

/** One finished subject as stored in subjects/<subject>.json. */
export interface SubjectResult {
  subject: string;
  /** Fingerprint of the subject's dev and test files. */
  data: string;
  /** In file order. */
  questions: QuestionRecord[];
}

/** Fingerprint of one subject's dev and test questions as loaded. */
export function dataFingerprint(data: MmluData, subject: string): string {
  const h = createHash('sha256');
  for (const q of [...data.dev.get(subject) ?? [], ...data.test.get(subject) ?? []]) {
    h.update(JSON.stringify([q.split, q.question, q.choices, q.answer]));
  }
  return h.digest('hex').slice(0, 32);
}

const OUTPUT_FILES = ['mmlu.csv', 'summary.json', 'run.json', 'lm_eval_results.json'];

/** A results directory opened for a run with `key`. */
export interface ResultsDir {
  /** A finished subject's result, or null when it has not been run. */
  load(subject: string, dataFingerprint: string, questions?: number): SubjectResult | null;
  save(result: SubjectResult): void;
  /**
   * Copies a subject's results file from another results directory of the same run key (its stamp is this
   * directory's then) when this one has none; returns whether it did. load() then checks it as its own.
   */
  adopt(subject: string, from: string): boolean;
  /** Writes mmlu.csv, summary.json and run.json. */
  finish(summary: MmluSummary, run: Record<string, unknown>): void;
}

/** Opens (creating) a results directory for `key`; refuses results of a different run unless `fresh`. */
export function openResultsDir(dir: string, key: RunKey, fresh: boolean): ResultsDir {
  const keyFile = join(dir, 'run-key.json');
  const subjectsDir = join(dir, 'subjects');
  const text = JSON.stringify(key, null, 2) + '\n';
  let keyText = text;
  const stored = existsSync(subjectsDir) ? readdirSync(subjectsDir).filter((f) => f.endsWith('.json')) : [];
  if (fresh && isOwnOutput(dir, 'mmlu-results')) {
    // only what an earlier run wrote: a directory mka did not write (given with --force) keeps its files
    for (const f of stored) rmSync(join(subjectsDir, f));
    const samples = existsSync(dir) ? readdirSync(dir).filter((f) => /^samples_mmlu_.+\.jsonl$/.test(f)) : [];
    for (const f of [...OUTPUT_FILES, ...samples, 'run-key.json']) rmSync(join(dir, f), { force: true });
  } else if (existsSync(keyFile)) {
    const old = readRegularFile(keyFile, 'run key file').toString('utf8');
    if (old !== text) {
      let differs = 'its run-key.json is unreadable';
      try {
        const o = JSON.parse(old) as RunKey;
        const value = (k: RunKey, f: string) => (f in k ? k[f] : KEY_DEFAULTS[f]);
        const fields = [...new Set([...Object.keys(o), ...Object.keys(key)])].filter((f) => value(o, f) !== value(key, f));
        differs = fields.join(', ') + ' differ';
        // A key written before a field existed, for what that field's default now describes: the same run.
        if (fields.length === 0) keyText = old;
      } catch {
        // keep the message above
      }
      if (keyText !== old) throw new UserError(`${keyFile}: ${dir} holds results of a different run (${differs}); choose another ${flag(OUT)}, or add ${flag(FRESH)} to discard them`);
    }
  } else if (stored.length > 0) {
    throw new UserError(`${subjectsDir}: holds results but no run-key.json, so they cannot be matched to this run; choose another ${flag(OUT)}, or add ${flag(FRESH)} to discard them`);
  }
  mkdirSync(subjectsDir, { recursive: true });
  writeMarker(dir, 'mmlu-results');
  if (!existsSync(keyFile)) atomicWriteText(keyFile, text);
  const runKey = createHash('sha256').update(keyText).digest('hex').slice(0, 16);
  const fileOf = (subject: string) => join(subjectsDir, `${subject}.json`);
  return {
    load(subject, fingerprint, questions) {
      const f = fileOf(subject);
      if (!existsSync(f)) return null;
      const r = readChecked(f, SUBJECT_RESULT, 'subject results file', 'delete the file to recompute the subject');
      if (r.subject !== subject || r.questions.some((q) => q.subject !== subject)) throw new UserError(`${f}: not the results of subject ${subject}; delete the file to recompute it`);
      if (r.runKey !== runKey) {
        throw new UserError(`${f}: computed by a different run than ${keyFile} describes (another ${flag(LIMIT)}, model or settings); add ${flag(FRESH)} to recompute every subject`);
      }
      if (r.data !== fingerprint) {
        throw new UserError(`${f}: the MMLU files of ${subject} changed since these results were computed; choose another ${flag(OUT)}, or add ${flag(FRESH)} to recompute`);
      }
      // the run key and data match, so a different list is an edited or damaged file: it would score other questions
      const misplaced = r.questions.findIndex((q, i) => q.index !== i);
      if ((questions !== undefined && r.questions.length !== questions) || misplaced >= 0) {
        throw new UserError(`${f}: holds ${r.questions.length} questions${misplaced >= 0 ? `, question ${misplaced} with index ${r.questions[misplaced].index}` : ''}; the run scores ${questions ?? 'the first ones'} in file order (a damaged or edited file); delete the file to recompute the subject`);
      }
      return r;
    },
    save(result) {
      atomicWriteText(fileOf(result.subject), JSON.stringify({ ...result, runKey }) + '\n');
    },
    adopt(subject, from) {
      const source = join(from, 'subjects', `${subject}.json`);
      if (existsSync(fileOf(subject)) || !existsSync(source)) return false;
      atomicWriteText(fileOf(subject), readFileSync(source, 'utf8'));
      return true;
    },
    finish(summary, run) {
      atomicWriteText(join(dir, 'mmlu.csv'), mmluCsv(summary));
      atomicWriteText(join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
      atomicWriteText(join(dir, 'run.json'), JSON.stringify({ finished: new Date().toISOString(), ...run }, null, 2) + '\n');
      atomicWriteText(join(dir, 'lm_eval_results.json'), JSON.stringify(lmEvalResults(summary, run), null, 2) + '\n');
    },
  };
}

function scoreRow(name: string, subjects: number, correct: number, accuracy: number, recs: readonly QuestionRecord[]): ScoreRow {
  const withRef = recs.filter((r) => r.agreement !== undefined);
  const meanLoss = recs.reduce((s, r) => s + r.nll / r.nllTokens, 0) / recs.length;
  return {
    name, subjects, questions: recs.length, correct, accuracy,
    perplexity: Math.exp(meanLoss),
    agreement: withRef.length ? withRef.filter((r) => r.agreement).length / withRef.length : null,
    kl: withRef.length ? withRef.reduce((s, r) => s + r.kl!, 0) / withRef.length : null,
  };
}

/** Scores of finished subjects: per subject, subcategory, category and overall. */
export function summarize(
  results: readonly SubjectResult[],
  info: { model: string | null; reference: string | null; data: string; ntrain: number; limit: number | null; answerTokens: string; extra: Record<string, unknown> },
): MmluSummary {
  const all = results.flatMap((r) => r.questions);
  const scores = aggregateScores(all);
  const bySubject = new Map(results.map((r) => [r.subject, r.questions]));
  const members = (pick: (s: string) => boolean) => results.filter((r) => pick(r.subject)).flatMap((r) => r.questions);
  return {
    model: info.model, reference: info.reference, data: info.data, ntrain: info.ntrain, limit: info.limit, answerTokens: info.answerTokens,
    ...info.extra,
    subjects: scores.subjects.map((g) => ({
      ...scoreRow(g.name, 1, g.correct, g.accuracy, bySubject.get(g.name)!),
      subcategory: subcategoryOf(g.name), category: CATEGORY_LABELS[categoryOf(g.name)],
    })),
    subcategories: scores.subcategories.map((g) => scoreRow(g.name, g.subjects, g.correct, g.accuracy, members((s) => subcategoryOf(s) === g.name))),
    categories: scores.categories.map((g) => ({ ...scoreRow(g.name, g.subjects, g.correct, g.accuracy, members((s) => categoryOf(s) === g.name)), name: CATEGORY_LABELS[g.name as keyof typeof CATEGORY_LABELS] })),
    overall: { ...scoreRow('overall', scores.overall.subjects, scores.overall.correct, scores.overall.micro, all), macroAccuracy: scores.overall.macro },
    fitting: {
      promptsWithDroppedExamples: all.filter((r) => r.ntrainKept < info.ntrain).length,
      droppedExamples: all.reduce((s, r) => s + info.ntrain - r.ntrainKept, 0),
      truncatedQuestions: all.filter((r) => r.truncated).length,
    },
  };
}

/** mmlu.csv: one row per subject. */
export function mmluCsv(summary: MmluSummary): string {
  return stringify(summary.subjects.map((s) => [s.name, s.subcategory, s.category, s.questions, s.correct, s.accuracy, s.perplexity, s.agreement ?? '']), {
    header: true,
    columns: ['subject', 'subcategory', 'category', 'questions', 'correct', 'accuracy', 'perplexity', 'agreement'],
  });
}

/**
 * A plain-text table of the scores: subjects, subcategories, categories, overall; each accuracy with
 * lm-eval's standard error over its questions (sample standard deviation over √n).
 */
export function formatSummaryTable(summary: MmluSummary): string {
  const ref = summary.overall.agreement !== null;
  const head = ['', 'questions', 'accuracy', '± stderr', 'perplexity', ...(ref ? ['agreement', 'KL'] : [])];
  const row = (r: ScoreRow, name = r.name) => [
    name, String(r.questions), (100 * r.accuracy).toFixed(1) + '%', (100 * accStderr(r.correct, r.questions)).toFixed(1), r.perplexity.toFixed(2),
    ...(ref ? [r.agreement === null ? '' : (100 * r.agreement).toFixed(1) + '%', r.kl === null ? '' : r.kl.toFixed(4)] : []),
  ];
  const sections: string[][][] = [
    [head.map((h, i) => (i === 0 ? 'subject' : h)), ...summary.subjects.map((r) => row(r))],
    [head.map((h, i) => (i === 0 ? 'subcategory' : h)), ...summary.subcategories.map((r) => row(r))],
    [head.map((h, i) => (i === 0 ? 'category' : h)), ...summary.categories.map((r) => row(r))],
    [row(summary.overall, 'overall (mean over questions)'),
      ['overall (mean over subjects)', String(summary.overall.questions), (100 * summary.overall.macroAccuracy).toFixed(1) + '%', '', '', ...(ref ? ['', ''] : [])]],
  ];
  const widths = head.map((_, i) => Math.max(...sections.flat().map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return sections.map((s) => s.map(fmt).join('\n')).join('\n\n') + '\n';
}

/** Writes every planned prompt as a JSON line: subject, index, ntrain (examples kept), prompt, answer. */
export function writeDumpFile(path: string, plans: readonly SubjectPlan[]): void {
  const lines: string[] = [];
  for (const p of plans) {
    for (const pq of p.questions) {
      lines.push(JSON.stringify({
        subject: p.subject, index: pq.question.index, ntrain: pq.ntrainKept, prompt: pq.prompt, answer: pq.question.answer,
        ...(pq.truncated ? { truncated: true, tokens: pq.ids.length } : {}),
      }));
    }
  }
  atomicWriteText(path, lines.join('\n') + (lines.length ? '\n' : ''));
}
