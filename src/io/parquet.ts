/**
 * Parquet files read with hyparquet, guarded so that a corrupt or hostile file is refused with a one-line
 * ParquetError and cannot take the process with it. First every page header is checked here (present
 * counts and sizes, within the column chunk, a declared size no compression could reach): hyparquet reads
 * a missing one as NaN and loops forever. Then the rows are decoded in a separate process: hyparquet sizes
 * arrays by counts read from the file and repeats run-length-encoded values as often as a run says (a few
 * bytes can ask for 2^31 values), so a file whose rows need more than HEAP_MB of memory, or longer than a
 * deadline proportional to its size, is refused instead of exhausting memory or hanging. The decoder is a
 * child process, not a worker thread: V8 ends the whole process when an array outgrows its largest size
 * or a worker its heap. One decoder serves a reader's files in turn.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { UserError } from '../runtime/errors.ts';
import { firstLine, readRegularFile } from './read.ts';

/** Heap the decoding of one file may take: far above what an evaluation split needs (MMLU's largest test file decodes in a few MB). */
export const HEAP_MB = 512;
/** Longest decoding by default: ten seconds, and two more per MB of file (hyparquet decodes about 100 MB a second). */
const defaultDeadlineMs = (bytes: number) => 10_000 + 2_000 * (bytes / 2 ** 20);
/** Most bytes one compressed byte can become: snappy's copies reach 64 bytes from 3 (a bound with room). */
const MAX_EXPANSION = 32;

/** Why a file's rows cannot be read (the caller names the file and the fix). */
export class ParquetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParquetError';
  }
}

/** The decoder (CommonJS, run by node as it is): decodes each file it is sent, answering rows or an error message. */
const DECODER = `
const lib = import(process.env.MKA_HYPARQUET_URL);
process.on('message', async ({ bytes, columns }) => {
  try {
    const { parquetReadObjects } = await lib;
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    process.send({ rows: await parquetReadObjects({ file, ...(columns ? { columns } : {}) }) });
  } catch (e) {
    process.send({ error: String((e && e.message) || e) });
  }
});
`;

type Json = Record<string, unknown>;

/** Whether `v` is an integer >= 0 (thrift i32, or i64 as a bigint). */
function isCount(v: unknown): boolean {
  return (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) || (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER));
}

/**
 * Checks the footer and every page header of a parquet file's bytes (read in place), throwing a
 * ParquetError for the first that hyparquet would loop forever on or that declares more than the file could hold.
 */
export async function checkParquetLayout(bytes: Uint8Array): Promise<void> {
  const { parquetMetadata } = await import('hyparquet');
  const { parquetHeader } = await import('hyparquet/src/column.js');
  let metadata;
  try {
    metadata = parquetMetadata(bytes);
  } catch (e) {
    throw new ParquetError(`parquet: ${e instanceof Error ? e.message : String(e)}`);
  }
  const size = bytes.byteLength;
  metadata.row_groups.forEach((group, g) => {
    if (!isCount(group.num_rows)) throw new ParquetError(`row group ${g} has ${String(group.num_rows)} rows`);
    group.columns.forEach((chunk, c) => {
      const where = `row group ${g}, column ${c}`;
      const meta = chunk.meta_data;
      if (!meta) throw new ParquetError(`${where} has no column metadata`);
      const start = Number(meta.dictionary_page_offset ?? meta.data_page_offset);
      const length = Number(meta.total_compressed_size);
      if (!isCount(start) || !isCount(length) || start + length > size) {
        throw new ParquetError(`${where} lies at bytes ${String(start)} to ${String(start + length)}, outside the file's ${size} bytes`);
      }
      const expand = meta.codec === 'UNCOMPRESSED' ? 1 : MAX_EXPANSION;
      const reader = { view: new DataView(bytes.buffer, bytes.byteOffset + start, length), offset: 0 };
      let page = 0;
      while (reader.offset < length) {
        const at = `${where}, page ${page++}`;
        let h: Json;
        try {
          h = parquetHeader(reader) as unknown as Json;
        } catch (e) {
          throw new ParquetError(`${at}: unreadable page header (${e instanceof Error ? e.message : String(e)})`);
        }
        const compressed = h.compressed_page_size, uncompressed = h.uncompressed_page_size;
        if (!isCount(compressed) || (compressed as number) > length - reader.offset) {
          throw new ParquetError(`${at}: compressed size ${String(compressed)} for the ${length - reader.offset} bytes left of the column`);
        }
        if (!isCount(uncompressed) || (uncompressed as number) > expand * (compressed as number) + 1024) {
          throw new ParquetError(`${at}: uncompressed size ${String(uncompressed)} from ${String(compressed)} bytes, more than ${meta.codec} can give`);
        }
        const counts = (section: string, fields: readonly string[]) => {
          const header = h[section] as Json | undefined;
          if (!header) throw new ParquetError(`${at}: a ${String(h.type)} without its ${section}`);
          for (const f of fields) if (!isCount(header[f])) throw new ParquetError(`${at}: ${section}.${f} is ${String(header[f])}, not a count`);
          return header as Record<string, number>;
        };
        if (h.type === 'DATA_PAGE') {
          counts('data_page_header', ['num_values']);
        } else if (h.type === 'DATA_PAGE_V2') {
          const v2 = counts('data_page_header_v2', ['num_values', 'num_nulls', 'num_rows', 'definition_levels_byte_length', 'repetition_levels_byte_length']);
          if (v2.num_nulls > v2.num_values || v2.num_rows > v2.num_values) throw new ParquetError(`${at}: ${v2.num_nulls} nulls or ${v2.num_rows} rows among ${v2.num_values} values`);
          if (v2.definition_levels_byte_length + v2.repetition_levels_byte_length > (compressed as number)) throw new ParquetError(`${at}: levels longer than the page`);
        } else if (h.type === 'DICTIONARY_PAGE') {
          counts('dictionary_page_header', ['num_values']);
        } else if (h.type !== 'INDEX_PAGE') {
          throw new ParquetError(`${at}: unknown page type ${String(h.type)}`);
        }
        reader.offset += compressed as number;
      }
    });
  });
}

export interface ParquetReader {
  /** The rows of parquet file `file` (`what` names it if it cannot be opened), only `columns` when given. */
  read(file: string, what: string, columns?: readonly string[]): Promise<Record<string, unknown>[]>;
  /** Ends the decoder. */
  close(): Promise<void>;
}

/**
 * A reader of parquet files; close it when done (its decoder does not keep the process alive meanwhile).
 * `deadlineMs` gives the longest decoding of a file of so many bytes (tests shorten it).
 */
export function openParquetReader(opts: { deadlineMs?: (bytes: number) => number } = {}): ParquetReader {
  const deadlineMs = opts.deadlineMs ?? defaultDeadlineMs;
  let child: ChildProcess | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  const start = (): ChildProcess => {
    const c = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, '--stack-size=4000', '-e', DECODER], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'], serialization: 'advanced',
      env: { ...process.env, MKA_HYPARQUET_URL: import.meta.resolve('hyparquet'), NODE_OPTIONS: '' },
    });
    c.unref();
    c.channel?.unref();
    return c;
  };
  const decode = (bytes: Uint8Array, columns?: readonly string[]) => new Promise<Record<string, unknown>[]>((resolve, reject) => {
    const c = child ??= start();
    const ms = deadlineMs(bytes.byteLength);
    /** Settles the read; `fatal`: the decoder ran out of memory, overran the deadline or died, and is not used again. */
    const done = (result: { rows: Record<string, unknown>[] } | { error: string; fatal: boolean }) => {
      clearTimeout(timer);
      c.off('message', onMessage).off('exit', onExit).off('error', onError);
      c.channel?.unref();
      if ('rows' in result) return resolve(result.rows);
      if (result.fatal) {
        child = null;
        c.kill('SIGKILL');
      }
      reject(new ParquetError(result.error));
    };
    const onMessage = (m: { rows?: Record<string, unknown>[]; error?: string }) =>
      done(m.error !== undefined ? { error: m.error, fatal: false } : { rows: m.rows ?? [] });
    // V8 aborts a process out of heap, or asked for an array past its largest size
    const onExit = (code: number | null, signal: string | null) => done({ fatal: true, error: signal === 'SIGABRT' || signal === 'SIGTRAP' || code === 134
      ? `its rows need more than ${HEAP_MB} MB to decode, or more than an array holds (a corrupt count, or a run that repeats a value billions of times)`
      : `the parquet decoder stopped (${signal ?? `exit code ${code}`})` });
    const onError = (e: Error) => done({ fatal: true, error: `the parquet decoder failed (${e.message})` });
    const timer = setTimeout(() => done({ fatal: true, error: `decoding took longer than ${Math.round(ms / 1000)} s (a corrupt count, or a run that repeats a value billions of times)` }), ms);
    c.on('message', onMessage).on('exit', onExit).on('error', onError);
    c.channel?.ref(); // decoding keeps the process alive; an idle decoder does not
    c.send({ bytes, columns: columns ? [...columns] : undefined });
  });
  return {
    read(file, what, columns) {
      const bytes = readRegularFile(file, what);
      const run = queue.then(async () => {
        await checkParquetLayout(bytes);
        return decode(bytes, columns);
      });
      queue = run.catch(() => {});
      return run;
    },
    async close() {
      await queue;
      child?.kill();
      child = null;
    },
  };
}

/**
 * The rows of parquet file `file` read with `reader` (`what` names it if it cannot be opened, only
 * `columns` when given); a file that cannot be decoded is a one-line UserError naming it, why, and `fix`.
 */
export async function readParquetFile(reader: ParquetReader, file: string, opts: { what: string; fix: string; columns?: readonly string[] }): Promise<Record<string, unknown>[]> {
  try {
    return await reader.read(file, opts.what, opts.columns);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${file}: not a readable parquet file (${firstLine(e instanceof Error ? e.message : String(e))}); ${opts.fix}`);
  }
}

/** The fix for a file of the hub cache that cannot be decoded. */
export const REFETCH = 'delete it from the hub cache to download it again';
