/**
 * The schema of a finished sweep point as stored in points/NAME.json (src/io/schema.ts): what the
 * report, a resumed sweep and the queue read back. The MMLU columns are numbers, or null where the
 * point has no such value; the summary is MMLU's (null when the sweep evaluates no MMLU).
 */
import { integer, nullable, number, object, optional, record, string, anyJson } from '../io/schema.ts';
import { MMLU_SUMMARY } from '../eval/mmlu/result-files.ts';

const SCORE = nullable(number);

export const STORED_POINT = object({
  method: string, layers_removed: integer, layers: integer, compression_ratio: number,
  quantize: optional(string), embedding_bits: optional(integer), bytes: optional(number), byte_compression_ratio: optional(number),
  mmlu: SCORE, mmlu_macro: SCORE, stem: SCORE, humanities: SCORE, social_sciences: SCORE, other: SCORE,
  perplexity: SCORE, ppl: SCORE, agreement: SCORE, kl: SCORE, seconds: number,
  summary: nullable(MMLU_SUMMARY), plan: optional(record(anyJson)),
});
