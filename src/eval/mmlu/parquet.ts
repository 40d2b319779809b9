/**
 * MMLU from the hub's parquet files (cais/mmlu: <subject>/<split>-NNNNN-of-NNNNN.parquet with columns
 * question, subject, choices (a list of 4 strings) and answer (0–3)) into the same questions
 * readMmluFile gives for the Hendrycks CSVs, and those questions back as Hendrycks CSV text.
 */
import { type ParquetReader, readParquetFile, REFETCH } from '../../io/parquet.ts';
import { UserError } from '../../runtime/errors.ts';
import { ANSWER_LETTERS, type MmluQuestion, type MmluSplit } from './data.ts';

/** Reads one parquet file of a subject's split (rows in file order; `line` is the 1-based row) with `reader`. */
export async function readMmluParquet(reader: ParquetReader, file: string, subject: string, split: MmluSplit): Promise<MmluQuestion[]> {
  const rows = await readParquetFile(reader, file, { what: 'MMLU parquet file', columns: ['question', 'choices', 'answer'], fix: REFETCH });
  return rows.map((r, index) => {
    const where = `${file}: row ${index + 1}`;
    const answer = Number(r.answer);
    const choices = r.choices;
    if (typeof r.question !== 'string' || r.question.trim() === '') throw new UserError(`${where}: the question is missing`);
    if (!Array.isArray(choices) || choices.length !== 4 || choices.some((c) => typeof c !== 'string')) throw new UserError(`${where}: choices must be a list of 4 strings`);
    if (!Number.isInteger(answer) || answer < 0 || answer > 3) throw new UserError(`${where}: answer ${String(r.answer)} is not 0-3`);
    return { subject, split, index, line: index + 1, question: r.question, choices: choices as [string, string, string, string], answer: ANSWER_LETTERS[answer] };
  });
}

const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** Questions as a Hendrycks CSV file (every text field quoted, so any content reads back unchanged). */
export function mmluCsvText(questions: readonly MmluQuestion[]): string {
  return questions.map((q) => [q.question, ...q.choices].map(quote).concat(q.answer).join(',')).join('\n') + '\n';
}
