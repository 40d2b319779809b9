/**
 * A job's data as it comes out of Redis. Anyone who can write to the queue can put anything there, so
 * a worker checks it before acting on it: its shape, and that every path it names (the model, the
 * data, the results directory, ...) lies inside the worker's root directory and every name it turns
 * into a file name (point, subject, task shard) is a plain name. A job that fails the check fails for good with
 * the reason; data that is not JSON at all reaches the processor as `NOT_JSON` (see worker.ts).
 */
import { resolve } from 'node:path';
import { isInside, unsafeRelative } from '../io/paths.ts';
import { UserError } from '../runtime/errors.ts';
import { isPlainObject, showJson } from '../io/read.ts';
import type { SweepJob } from './jobs.ts';
import { OptionError, type OptionSpec, checkOption, flag } from '../runtime/options.ts';
import { SWEEP_JOB_NESTED_OPTIONS, SWEEP_JOB_OPTIONS, SWEEP_JOB_PATHS, SWEEP_JOB_REQUIRED, methodParamsProblem } from '../sweep/options.ts';
import { ROOT } from './options.ts';

/** What a worker hands its processor in place of job data that is not JSON. */
export const NOT_JSON = '__mka_not_json__';

const KINDS = new Set(['calibration', 'point', 'subject', 'shard']);

function bad(what: string): never {
  throw new UserError(`job data refused: ${what}`);
}

/** Checks an option's value in a job by its spec. */
function checkValue(spec: OptionSpec, value: unknown, at: string): void {
  try {
    checkOption(spec, value);
  } catch (e) {
    if (e instanceof OptionError) bad(`${at}: ${e.message}`);
    throw e;
  }
}

/** A point id: `original`, or a method name and a whole count above 0. */
function checkPoint(p: unknown): void {
  if (!isPlainObject(p) || typeof p.method !== 'string' || !Number.isInteger(p.removed) || (p.removed as number) < 0) bad('"point" must be {method, removed}');
  if (unsafeRelative(p.method) !== null || p.method.includes('/')) bad(`point method ${showJson(p.method)} is not a plain name`);
  if (p.quantize !== undefined && (typeof p.quantize !== 'string' || p.quantize === '')) bad('point "quantize" must be a quantization such as gptq:w4g32');
}

/** Checks a job's data (see the file comment); `root` is the directory every path must lie in. Returns it typed. */
export function checkJob(data: unknown, root: string): SweepJob {
  if (data === NOT_JSON) bad('it is not JSON');
  if (!isPlainObject(data)) bad('not a JSON object');
  if (typeof data.kind !== 'string' || !KINDS.has(data.kind)) bad(`unknown kind ${showJson(data.kind)}`);
  const sweep = data.sweep;
  if (!isPlainObject(sweep)) bad('no "sweep" object');
  for (const f of SWEEP_JOB_REQUIRED) if (sweep[f] === undefined) bad(`no sweep.${f}`);
  for (const s of SWEEP_JOB_PATHS) {
    const v = sweep[s.name];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '') bad(`sweep.${s.name} must be a path`);
    if (!isInside(root, resolve(root, v))) bad(`sweep.${s.name} ${v} lies outside the worker's root ${root} (mka worker ${flag(ROOT)})`);
  }
  const taskData = sweep.taskData;
  if (taskData !== undefined) {
    if (!isPlainObject(taskData) || !Object.values(taskData).every((v) => typeof v === 'string' && v !== '')) bad('sweep.taskData must map task names to paths');
    for (const [task, v] of Object.entries(taskData)) {
      if (!isInside(root, resolve(root, v as string))) bad(`sweep.taskData.${task} ${v as string} lies outside the worker's root ${root} (mka worker ${flag(ROOT)})`);
    }
  }
  const ppl = sweep.ppl;
  if (ppl !== undefined) {
    if (!isPlainObject(ppl) || typeof ppl.text !== 'string') bad('sweep.ppl must be {text, ...}');
    if (!isInside(root, resolve(root, ppl.text))) bad(`sweep.ppl.text ${ppl.text} lies outside the worker's root ${root} (mka worker ${flag(ROOT)})`);
  }
  // the sweep's option values, by the specs the command line checks them with
  for (const s of SWEEP_JOB_OPTIONS as readonly OptionSpec[]) {
    if (s.list && sweep[s.name] !== undefined && !Array.isArray(sweep[s.name])) bad(`sweep.${s.name} must be a list`);
    checkValue(s, sweep[s.name], `sweep.${s.name}`);
  }
  const params = methodParamsProblem(sweep.params);
  if (params) bad(`${params}; enqueue the sweep again with this mka`);
  for (const [field, specs] of Object.entries(SWEEP_JOB_NESTED_OPTIONS)) {
    const nested = sweep[field];
    if (nested === undefined) continue;
    if (!isPlainObject(nested)) bad(`sweep.${field} must be an object`);
    for (const s of specs) checkValue(s, nested[s.name], `sweep.${field}.${s.name}`);
  }
  if (data.kind !== 'calibration') checkPoint(data.point);
  if (data.kind === 'subject' && (typeof data.subject !== 'string' || unsafeRelative(data.subject) !== null || data.subject.includes('/'))) {
    bad(`subject ${showJson(data.subject)} is not a plain name`);
  }
  if (data.kind === 'shard') {
    const plain = (v: unknown) => typeof v === 'string' && /^[A-Za-z0-9_.-]+$/.test(v) && unsafeRelative(v) === null;
    if (!plain(data.task) || !plain(data.subtask) || !Number.isInteger(data.index) || (data.index as number) < 0) bad('a shard job needs a plain task and subtask name and a whole index');
  }
  return data as unknown as SweepJob;
}
