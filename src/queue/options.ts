/**
 * The options of the queue's commands (`mka worker`, `mka queue status`, and `mka sweep --queue`),
 * declared once (contract 5, src/runtime/options.ts). Neither BullMQ nor Redis is loaded here.
 */
import { option } from '../runtime/options.ts';

/** The BullMQ queue a sweep and its workers share unless --queue-name says otherwise. */
export const DEFAULT_QUEUE_NAME = 'mka';
/** How many times a job runs before it fails for good when it throws (a user error fails at once). */
export const DEFAULT_ATTEMPTS = 3;
/** Milliseconds a job stays locked without renewal before another worker may take it back. */
export const DEFAULT_LOCK_MS = 30_000;

const G = 'Many machines:';

export const QUEUE_URL = option({ name: 'url', option: 'queue', type: 'string', required: true, help: 'Redis URL, e.g. redis://10.0.0.5:6379' });
export const QUEUE_NAME = option({ name: 'name', option: 'queue-name', type: 'string', default: DEFAULT_QUEUE_NAME, help: 'BullMQ queue name (as given to mka sweep)' });
/** The longest delay Node's timers keep (2^31 − 1 ms, about 24.8 days): a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
export const LOCK_DURATION = option({
  name: 'lockDuration', option: 'lock-duration', type: 'integer', min: 1, max: MAX_TIMER_MS, default: DEFAULT_LOCK_MS,
  help: 'ms a job stays locked without renewal: a dead worker\'s job is retried after this',
});
export const STALLED_INTERVAL = option({ name: 'stalledInterval', option: 'stalled-interval', type: 'integer', min: 1, max: MAX_TIMER_MS, default: 30_000, help: 'ms between checks for jobs of dead workers' });
export const MAX_STALLED = option({ name: 'maxStalledCount', option: 'max-stalled', type: 'integer', min: 0, default: 2, help: 'times a job may be taken back from dead workers before it fails' });
export const ROOT = option({
  name: 'root', option: 'root', type: 'string', path: 'directory',
  help: 'directory every model, data and results path of a job must lie in; others are refused (default: the working directory)',
});
export const STATUS_LIMIT = option({ name: 'limit', option: 'limit', type: 'integer', min: 1, default: 50, help: 'most jobs listed per state' });

/** A sweep's --queue: optional there (without it the sweep runs locally). */
export const SWEEP_QUEUE_URL = option({
  name: 'url', option: 'queue', type: 'string', group: G,
  help: 'Redis URL: enqueue the sweep as jobs for `mka worker`s and wait, e.g. redis://10.0.0.5:6379',
});
export const SWEEP_QUEUE_NAME = option({ ...QUEUE_NAME, group: G, help: 'BullMQ queue name' });
export const ATTEMPTS = option({
  name: 'attempts', option: 'attempts', type: 'integer', min: 1, default: DEFAULT_ATTEMPTS, group: G,
  help: 'runs of a failing job before the sweep stops (user errors: 1)',
});
