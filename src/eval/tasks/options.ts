/**
 * The options of the task layer (`mka eval TASK`, `mka eval tasks`, and the task part of `mka sweep`),
 * declared once (contract 5, src/runtime/options.ts). No tfjs here.
 */
import { option } from '../../runtime/options.ts';
import { LM_EVAL_TASKS, TASK_NAMES } from './registry.ts';

/** One task's data: a file or directory of its splits, or a hub dataset (resolved by src/hub/dataset.ts, not by the CLI). */
export const TASK_DATA = option({
  name: 'data', option: 'data', type: 'string',
  help: 'the task\'s data: a .parquet/.jsonl file of the evaluated split, a directory of split files, or a hub dataset id (default: the one lm-eval uses)',
});
/** `eval tasks`: TASK=PATH pairs. */
export const TASKS_DATA = option({
  name: 'data', option: 'data', type: 'string',
  help: 'per task TASK=PATH, comma-separated (default: each task\'s hub dataset), e.g. hellaswag=hs.parquet,piqa=piqa/',
});
export const TASKS = option({
  name: 'tasks', option: 'tasks', type: 'string', list: true, required: true,
  help: `comma-separated tasks, evaluated in one pass over a streamed model: ${LM_EVAL_TASKS.map((t) => t.name).join(', ')}, and mmlu (the paper's, first, into OUT/mmlu/)`,
});
export const TASK_LIMIT = option({ name: 'limit', option: 'limit', type: 'integer', min: 1, help: 'first N documents (per subject for mmlu_lmeval)' });
export const NUM_FEWSHOT = option({
  name: 'numFewshot', option: 'num-fewshot', type: 'integer', min: 0,
  help: 'few-shot examples per prompt (default: the task\'s own: 0, or 5 for mmlu_lmeval), drawn as lm-eval\'s sampler draws them',
});
export const TASK_NTRAIN = option({ name: 'ntrain', option: 'ntrain', type: 'integer', min: 0, help: 'mmlu_lmeval: the same as --num-fewshot' });
export const TASK_SUBJECTS = option({ name: 'subjects', option: 'subjects', type: 'string', list: true, help: 'mmlu_lmeval (and mmlu): comma-separated MMLU subjects (default all)' });
export const TASK_OUT = option({ name: 'out', option: 'out', type: 'string', help: 'results directory (default results/<task>/<model name>); rerun to resume' });
export const LOG_SAMPLES = option({
  name: 'logSamples', option: 'log-samples', type: 'boolean', default: false,
  help: 'also write samples_<task>.jsonl: every document\'s requests, loglikelihoods and metrics, as lm-eval --log_samples',
});
export const TASK_BATCH_SIZE = option({ name: 'batchSize', option: 'batch-size', type: 'integer', min: 1, default: 16, help: 'rows per forward pass' });
export const TASK_NAIVE = option({ name: 'naive', option: 'naive', type: 'boolean', default: false, help: 'no prefix cache or batching: every request alone (reference path)' });
export const MAX_LENGTH = option({
  name: 'maxLength', option: 'max-length', type: 'integer', min: 2,
  help: 'the model\'s context in tokens (lm-eval\'s max_length; default max_position_embeddings): longer inputs lose their first tokens',
});

/** What a task's run key records of its options (evaluate.ts), in the key's order. */
export const TASK_KEY = [NUM_FEWSHOT, TASK_LIMIT, MAX_LENGTH] as const;
/** The key's field names where they are not the spec's name (keyFields' `as`): existing results directories hold them. */
export const TASK_KEY_FIELDS = { [NUM_FEWSHOT.name]: 'shots' };

/** `mka sweep --tasks`: what every point is evaluated on. */
export const SWEEP_TASKS = option({
  name: 'tasks', option: 'tasks', type: 'choice', list: true, choices: TASK_NAMES, default: 'mmlu',
  help: 'comma-separated tasks every point is evaluated on (mmlu: the paper\'s, on --data)',
});
export const SWEEP_TASK_DATA = option({
  name: 'taskData', option: 'task-data', type: 'string',
  help: 'data of the tasks but mmlu, TASK=PATH comma-separated (a file, directory or hub id; default: each task\'s hub dataset)',
});
export const SWEEP_NUM_FEWSHOT = option({
  ...NUM_FEWSHOT, help: 'few-shot examples of the tasks but mmlu (default: each task\'s own; mmlu_lmeval: --ntrain)',
});
