/**
 * Freezes what `mka eval mmlu` writes (subjects/<subject>.json, summary.json, mmlu.csv) for a few option sets
 * on the plain-JS `cpu` backend (the same bits on every machine), into test/fixtures/mmlu-records/, so that a
 * change of the evaluator's machinery can be checked to leave the records and summaries bit-identical
 * (test/mmlu-records.test.ts). Made with the evaluator of commit a8aca5b (before MMLU ran on the shared
 * scorer); rerun only when the records are meant to change.
 *
 *   MKA_SHARED=/work/shared node --import tsx scripts/goldens/mmlu-records.ts
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initBackend } from '../../src/runtime/backend.ts';
import { loadModel, disposeModel } from '../../src/model/model.ts';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { loadMmlu } from '../../src/eval/mmlu/data.ts';
import { ensureBenchmark } from '../../src/eval/mmlu/demo-benchmark.ts';
import { evaluateMmlu } from '../../src/eval/mmlu/evaluate.ts';
import { scoringTokenizer } from '../../src/eval/mmlu/question-plan.ts';
import { convertLlama2c } from '../../src/convert/llama2c.ts';

export const MMLU_RECORD_CASES = [
  { name: 'demo-cached-reference-nobos', model: 'models/demo', data: 'demo', subjects: ['demo_arithmetic', 'demo_facts'], ntrain: 5, limit: 5, bos: false, reference: 'models/demo-nolayerdrop', batchSize: 3 },
  { name: 'demo-naive', model: 'models/demo', data: 'demo', subjects: ['demo_sequences'], ntrain: 3, limit: 2, cached: false },
  { name: 'demo-streamed', model: 'models/demo', data: 'demo', subjects: ['demo_alphabet', 'demo_comparison'], ntrain: 5, limit: 3, streaming: true, reference: 'models/demo-nolayerdrop' },
  { name: 'stories-truncated', model: 'stories260K', data: 'mmlu', subjects: ['abstract_algebra', 'high_school_european_history'], ntrain: 5, limit: 1, batchSize: 2 },
] as const;

const ROOT = process.cwd();

/** summary.json with the directories it names (model, reference, data) as <root>/, <tmp>/ and <shared>/ (the rest byte for byte). */
export function placeholders(text: string, root: string, tmp: string, shared: string): string {
  return text.replaceAll(`"${root}/`, '"<root>/').replaceAll(`"${tmp}/`, '"<tmp>/').replaceAll(`"${shared}/`, '"<shared>/');
}
const OUT = join(ROOT, 'test', 'fixtures', 'mmlu-records');

/** Runs every case (the MMLU one when `shared` is given) with the current evaluator into tmp/<case>/; returns the case names run. */
export async function runMmluRecordCases(tmp: string, shared: string | null, only?: readonly string[]): Promise<string[]> {
  const demo = join(tmp, 'demo-mmlu');
  await ensureBenchmark(demo);
  const stories = join(tmp, 'stories260K');
  if (shared) await convertLlama2c({ checkpoint: join(shared, 'models/stories260K/stories260K.bin'), tokenizer: join(shared, 'models/stories260K/tok512.bin'), out: stories });
  const ran: string[] = [];
  for (const c of MMLU_RECORD_CASES) {
    if ((c.data === 'mmlu' && !shared) || (only && !only.includes(c.name))) continue;
    const dir = c.model === 'stories260K' ? stories : join(ROOT, c.model);
    const data = loadMmlu(c.data === 'demo' ? demo : join(shared!, 'data/mmlu'), { subjects: 'subjects' in c ? [...c.subjects] : undefined });
    const model = loadModel(dir, { streaming: 'streaming' in c && c.streaming });
    const reference = 'reference' in c ? loadModel(join(ROOT, c.reference), { streaming: 'streaming' in c && c.streaming }) : undefined;
    const bos = 'bos' in c ? c.bos : true;
    try {
      await evaluateMmlu({
        model, tokenizer: scoringTokenizer(await loadTokenizer(dir), bos), data, ntrain: c.ntrain, limit: c.limit, referenceModel: reference,
        batchSize: 'batchSize' in c ? c.batchSize : undefined, cached: 'cached' in c ? c.cached : true, out: join(tmp, c.name), keyExtra: { quantize: 'none', bos },
      });
    } finally {
      disposeModel(model);
      if (reference) disposeModel(reference);
    }
    ran.push(c.name);
  }
  return ran;
}

async function main(): Promise<void> {
  await initBackend('cpu');
  const tmp = mkdtempSync(join(tmpdir(), 'mka-mmlu-records-'));
  const shared = process.env.MKA_SHARED ? resolve(process.env.MKA_SHARED) : null;
  try {
    for (const name of await runMmluRecordCases(tmp, shared)) {
      const out = join(tmp, name);
      rmSync(join(out, 'run.json'));
      rmSync(join(out, 'lm_eval_results.json'));
      rmSync(join(OUT, name), { recursive: true, force: true });
      cpSync(out, join(OUT, name), { recursive: true });
      const summary = join(OUT, name, 'summary.json');
      writeFileSync(summary, placeholders(readFileSync(summary, 'utf8'), ROOT, tmp, shared ?? '\0'));
      process.stderr.write(`${name}\n`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('mmlu-records.ts')) await main();
