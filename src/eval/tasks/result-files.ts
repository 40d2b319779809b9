/**
 * The schema of the task result file mka reads back (src/io/schema.ts): a finished shard of a task
 * (OUT/<task>/shards/…json, read when a run resumes). A file that does not fit (written by an older mka,
 * edited, or cut short) is refused naming the field and the fix.
 */
import { array, boolean, integer, number, object, string } from '../../io/schema.ts';

/** One document's record (DocRecord in evaluate.ts). */
export const DOC_RECORD = object({
  doc_id: integer, lls: array(number), greedy: array(boolean), acc: number, acc_norm: number, gold: integer, truncated: integer, shots: integer,
});

/** A finished shard: which one, the run key and document fingerprint it was computed under, its documents' records. */
export const TASK_SHARD = object({ task: string, subtask: string, shard: integer, runKey: string, data: string, records: array(DOC_RECORD) });
