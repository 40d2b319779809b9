/**
 * The Redis connection behind a queue: `--queue redis://HOST:PORT[/DB]` (or rediss:// for TLS).
 * Commands that talk to the queue briefly (sweep, status) fail at once with a one-line error when
 * Redis cannot be reached; workers keep reconnecting, so a Redis restart does not stop them.
 */
import { Redis } from 'ioredis';
import { UserError } from '../runtime/errors.ts';

/** The queue's name in Redis when --queue-name is not given. */
export { DEFAULT_QUEUE_NAME } from './options.ts';
import { DEFAULT_QUEUE_NAME, QUEUE_NAME, QUEUE_URL } from './options.ts';
import { flag } from '../runtime/options.ts';

export interface QueueAddress {
  /** redis://HOST:PORT[/DB] */
  url: string;
  /** BullMQ queue name (default DEFAULT_QUEUE_NAME). */
  name?: string;
}

/** Checks a --queue URL and a --queue-name. */
export function checkAddress(q: QueueAddress): { url: string; name: string } {
  let u: URL;
  try {
    u = new URL(q.url);
  } catch {
    throw new UserError(`${flag(QUEUE_URL)} ${q.url}: not a URL; expected redis://HOST:PORT, e.g. redis://10.0.0.5:6379`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UserError(`${flag(QUEUE_URL)} ${q.url}: expected a redis:// (or rediss://) URL, e.g. redis://10.0.0.5:6379`);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new UserError(`${flag(QUEUE_URL)} ${q.url}: the path must be a database number (redis://HOST:PORT/0), not /${db}`);
  const name = q.name ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new UserError(`${flag(QUEUE_NAME)} ${name}: use letters, digits, '.', '_' and '-' only`);
  return { url: q.url, name };
}

/**
 * Opens a connection and waits until it is ready; an unreachable server is a UserError after
 * `timeoutMs`. `persistent` (workers) keeps reconnecting after the first connection; null when
 * `signal` aborts first.
 */
export async function connectRedis(url: string, opts?: { persistent?: boolean; timeoutMs?: number }): Promise<Redis>;
export async function connectRedis(url: string, opts: { persistent?: boolean; timeoutMs?: number; signal?: AbortSignal }): Promise<Redis | null>;
export async function connectRedis(url: string, opts: { persistent?: boolean; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Redis | null> {
  const redis = new Redis(url, {
    maxRetriesPerRequest: null, // BullMQ's blocking commands need this
    ...(opts.persistent ? {} : { retryStrategy: () => null }),
  });
  let lastError = '';
  redis.on('error', (e: Error) => {
    lastError = e.message;
  });
  const timeoutMs = opts.timeoutMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  const ready = await new Promise<boolean>((resolve) => {
    redis.once('ready', () => resolve(true));
    redis.once('end', () => resolve(false));
    timer = setTimeout(() => resolve(false), timeoutMs);
    opts.signal?.addEventListener('abort', () => resolve(false), { once: true });
  });
  clearTimeout(timer);
  if (opts.signal?.aborted) {
    redis.disconnect();
    return null;
  }
  if (!ready) {
    redis.disconnect();
    throw new UserError(`${flag(QUEUE_URL)} ${url}: cannot reach Redis (${lastError || `no answer within ${timeoutMs / 1000} s`}); start redis-server there, or fix the address`);
  }
  // ioredis selects the URL's database without reporting a refusal: ask again and check
  const db = redis.options.db ?? 0;
  try {
    await redis.select(db);
  } catch (e) {
    redis.disconnect();
    throw new UserError(`${flag(QUEUE_URL)} ${url}: Redis refuses database ${db} (${(e as Error).message}); use one it has (redis://HOST:PORT/0, the default)`);
  }
  return redis;
}
