/**
 * A task run's files in lm-evaluation-harness 0.4's formats, for tools that read lm-eval output:
 *
 *   lm_eval_results.json   its results schema: results (acc,none / acc_stderr,none ...), groups,
 *                          group_subtasks, configs, versions, n-shot, higher_is_better, n-samples, config,
 *                          tokenizer and model identity, task_hashes, timings, environment; plus `mka`
 *                          (what mka did differently or had to do: truncated prompts, shots kept)
 *   samples_<task>.jsonl   with --log-samples, one line per document as lm-eval's --log_samples writes
 *                          it (doc_id, doc, target, arguments, resps, filtered_resps, metrics, hashes,
 *                          acc, acc_norm), so its doc/prompt/target hashes and task_hashes equal lm-eval's
 *                          for the same documents
 *
 * `n-shot` states the few-shot examples every prompt of a task holds in full: when prompts had to be
 * cut to the model's context, it is the fewest any kept, not the number asked for.
 */
import { basename, resolve } from 'node:path';
import type { LlamaModel } from '../../model/model.ts';
import { parameterCount } from '../../model/model.ts';
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { mkaVersion } from '../../runtime/version.ts';
import { PyFloat, hashString, pyFloatStr, pyJson } from '../../runtime/python.ts';
import type { DocRecord, TaskInput, TaskResult } from './evaluate.ts';
import { docRequests } from './requests.ts';
import type { Doc } from './task.ts';
import type { MetricValue } from './metrics.ts';

/** The lm-eval sample line of one document, and its three hashes. */
export function sampleOf(input: TaskInput, doc: Doc, shots: readonly Doc[], rec: DocRecord): { sample: Record<string, unknown>; hash: string } {
  const task = input.task;
  const req = docRequests(task, doc, shots);
  const arguments_ = Object.fromEntries(req.requests.map((r, i) => [`gen_args_${i}`, { arg_0: r.context, arg_1: r.continuation }]));
  const resps = rec.lls.map((ll, i) => [pyFloatStr(ll), rec.greedy[i] ? 'True' : 'False']);
  const docHash = hashString(pyJson(doc, 2));
  const promptHash = hashString(req.requests[0].context);
  const targetHash = hashString(String(req.target));
  const sample: Record<string, unknown> = {
    doc_id: rec.doc_id, doc, target: String(req.target), arguments: arguments_,
    resps: resps.map((r) => [r]), filtered_resps: resps, filter: 'none', metrics: [...task.metrics],
    doc_hash: docHash, prompt_hash: promptHash, target_hash: targetHash,
    ...Object.fromEntries(task.metrics.map((m) => [m, new PyFloat(rec[m])])),
  };
  return { sample, hash: docHash + promptHash + targetHash };
}

/** The lines of samples_<subtask>.jsonl (json.dumps of each sample) and the subtask's task hash. */
export function samplesFile(lines: readonly Record<string, unknown>[], hashes: readonly string[]): { text: string; taskHash: string } {
  return { text: lines.map((s) => pyJson(s) + '\n').join(''), taskHash: hashString(hashes.join('')) };
}

/** lm-eval's per-task result entry: alias, then each metric and its stderr ("N/A" when undefined). */
function resultEntry(name: string, alias: string, metrics: Record<string, MetricValue>, sampleLen?: number): Record<string, unknown> {
  const e: Record<string, unknown> = { name, alias, ...(sampleLen !== undefined ? { sample_len: sampleLen } : {}) };
  for (const [m, v] of Object.entries(metrics)) {
    e[`${m},none`] = v.value;
    e[`${m}_stderr,none`] = v.stderr ?? 'N/A';
  }
  return e;
}

export interface RunIdentity {
  model: LlamaModel;
  modelDir: string | null;
  tokenizer: Tokenizer;
  maxLength: number;
  batchSize: number;
  backend: string;
  /** The products' precision ('float32' | 'bfloat16'). */
  compute: string;
  startTime: number;
  endTime: number;
  /** Per subtask: its task hash (with --log-samples). */
  taskHashes: Record<string, string>;
}

/** The results JSON of finished tasks, in lm-eval's schema. */
export function lmEvalJson(results: readonly TaskResult[], id: RunIdentity): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const groups: Record<string, unknown> = {};
  const groupSubtasks: Record<string, string[]> = {};
  const configs: Record<string, unknown> = {}, versions: Record<string, unknown> = {}, nShot: Record<string, number> = {};
  const higher: Record<string, unknown> = {}, nSamples: Record<string, unknown> = {};
  const mka: Record<string, unknown> = {};
  for (const r of results) {
    const t = r.task;
    const better = Object.fromEntries(t.metrics.map((m) => [m, true]));
    const grouped = r.subtasks.length > 1 || r.subtasks[0].name !== t.name;
    const top = t.resultName ?? t.name;
    if (grouped) {
      out[top] = groups[top] = resultEntry(top, top, r.metrics);
      versions[top] = t.version;
      higher[top] = better;
      for (const g of r.groups) {
        out[g.name] = groups[g.name] = resultEntry(g.name, g.alias, g.metrics);
        versions[g.name] = t.version;
        higher[g.name] = better;
        groupSubtasks[g.name] = g.members;
      }
      groupSubtasks[top] = r.groups.length ? r.groups.map((g) => g.name) : r.subtasks.map((s) => s.name);
    }
    for (const s of r.subtasks) {
      const minShots = s.records.reduce((m, rec) => Math.min(m, rec.shots), r.shots);
      out[s.name] = resultEntry(s.name, s.alias, s.metrics, s.records.length);
      configs[s.name] = { task: s.name, ...t.config, ...s.config, num_fewshot: r.shots };
      versions[s.name] = grouped ? 1 : t.version;
      nShot[s.name] = minShots;
      higher[s.name] = better;
      nSamples[s.name] = { original: s.originalSize, effective: s.records.length };
      const truncated = s.records.filter((rec) => rec.truncated > 0);
      if (truncated.length || minShots < r.shots) {
        mka[s.name] = {
          shots_requested: r.shots, prompts_truncated: truncated.length, tokens_dropped: truncated.reduce((a, rec) => a + rec.truncated, 0),
          prompts_with_fewer_shots: s.records.filter((rec) => rec.shots < r.shots).length,
        };
      }
    }
  }
  const tok = id.tokenizer;
  const special = (tid: number | null | undefined) => (tid === null || tid === undefined ? null : [tok.decode([tid]), String(tid)]);
  const name = id.modelDir ?? '(in memory)';
  return {
    results: out, groups, group_subtasks: groupSubtasks, configs, versions, 'n-shot': nShot, higher_is_better: higher, 'n-samples': nSamples,
    config: {
      model: 'mka', model_args: { pretrained: name }, model_num_parameters: parameterCount(id.model.config), model_dtype: id.compute, model_revision: 'main', model_sha: '',
      batch_size: String(id.batchSize), batch_sizes: [], device: 'cpu', use_cache: null, limit: results[0]?.limit ?? null, bootstrap_iters: 100000,
      gen_kwargs: {}, random_seed: 0, numpy_seed: 1234, torch_seed: 1234, fewshot_seed: 1234,
    },
    git_hash: null,
    date: id.startTime / 1000,
    pretty_env_info: `mka ${mkaVersion()}, Node.js ${process.version}, tfjs backend ${id.backend}, ${process.platform} ${process.arch}`,
    transformers_version: null,
    lm_eval_version: null,
    upper_git_hash: null,
    tokenizer_pad_token: special(tok.eos[0]),
    tokenizer_eos_token: special(tok.eos[0]),
    tokenizer_bos_token: special(tok.bos),
    eot_token_id: tok.eos[0] ?? null,
    max_length: id.maxLength,
    task_hashes: id.taskHashes,
    model_source: 'mka',
    model_name: name,
    model_name_sanitized: name.replace(/[/\\:]/g, '__'),
    system_instruction: null, system_instruction_sha: null, fewshot_as_multiturn: null, chat_template: null, chat_template_sha: null,
    start_time: id.startTime / 1000,
    end_time: id.endTime / 1000,
    total_evaluation_time_seconds: String((id.endTime - id.startTime) / 1000),
    mka: {
      version: mkaVersion(), backend: id.backend, compute: id.compute,
      scoring: "lm-eval 0.4's loglikelihood for Hugging Face models: the context's trailing whitespace moved to the continuation, the whole string encoded and split at the context's length, BOS as the tokenizer adds it, inputs cut from the left to max_length",
      truncation: mka,
    },
  };
}

/** A default results directory: results/<what>/<model name>. */
export function defaultTasksOut(what: string, modelDir: string): string {
  return `results/${what}/${basename(resolve(modelDir))}`;
}
