/**
 * Reading the user's text and JSON files with one set of checks: the path must be a regular file, the
 * bytes valid UTF-8 (no silent U+FFFD), the JSON valid and of the expected shape. Every failure is a
 * one-line UserError naming the file.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { UserError } from '../runtime/errors.ts';

/**
 * Opens `path` for reading, refusing anything but a regular file with a UserError naming `what` (a
 * FIFO would block the run, a device never end): the open does not wait on a FIFO (O_NONBLOCK), and
 * the check is on what was opened. Returns the descriptor; the caller closes it.
 */
export function openRegularFile(path: string, what: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: cannot open ${what} (${code === 'ENOENT' ? 'not found' : code ?? (e as Error).message})`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new UserError(`${path}: ${what} is ${st.isDirectory() ? 'a directory' : 'not a regular file (a FIFO, socket or device)'}; give a regular file`);
  }
  return fd;
}

/** The bytes of a regular file (see openRegularFile). */
export function readRegularFile(path: string, what: string): Buffer {
  const fd = openRegularFile(path, what);
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Throws unless `path` is an existing regular file; `what` says what it is ("--config file"). */
function checkFile(path: string, what: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UserError(`${path}: ${what} not found`);
  }
  if (st.isDirectory()) throw new UserError(`${path}: ${what} is a directory; give the path of a file`);
  if (!st.isFile()) throw new UserError(`${path}: ${what} is not a regular file`);
}

/** Decodes UTF-8 bytes, refusing invalid sequences; a leading byte order mark is kept for the caller. */
function decodeUtf8(bytes: Uint8Array, path: string, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    let valid = 0;
    // find the first bad byte for the message: the longest prefix that decodes
    for (let lo = 0, hi = bytes.length; lo < hi;) {
      const mid = (lo + hi + 1) >> 1;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
        valid = mid;
        lo = mid;
      } catch {
        hi = mid - 1;
      }
    }
    throw new UserError(`${path}: ${what} is not valid UTF-8 text (bad byte at offset ${valid}); save it as UTF-8`);
  }
}

/** Reads a UTF-8 text file (checked as `checkFile` and `decodeUtf8` do). */
export function readTextFile(path: string, what: string): string {
  checkFile(path, what);
  return decodeUtf8(readRegularFile(path, what), path, what);
}

/** First line of an error message (parsers' messages may quote the input over several lines). */
export function firstLine(msg: string): string {
  return msg.split(/[\r\n]/)[0].trim();
}

/** Parses JSON text from `path`; invalid JSON is a UserError naming the file. */
export function parseJsonText(text: string, path: string, what: string): unknown {
  if (text.trim() === '') throw new UserError(`${path}: ${what} is empty; expected JSON`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: ${what} is not valid JSON (${firstLine((e as Error).message)})`);
  }
}

/** Reads a JSON file of any value. */
export function readJsonFile(path: string, what: string): unknown {
  return parseJsonText(readTextFile(path, what), path, what);
}

/** True for a JSON object (not null, not an array). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** True for a token id as any file gives one (tokenizer.json, config.json, generation_config.json): an integer >= 0 that a double holds exactly. */
export function isTokenId(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** Reads a JSON file that must hold an object. */
export function readJsonObject(path: string, what: string): Record<string, unknown> {
  const v = readJsonFile(path, what);
  if (!isPlainObject(v)) throw new UserError(`${path}: ${what} must hold a JSON object, not ${describeJson(v)}`);
  return v;
}

/**
 * A JSON value for a one-line message, short whatever the file holds: numbers, booleans and null as
 * written, a string quoted (cut after `max` characters), an array or object by its kind only (quoting them
 * could take megabytes, or overflow the stack on deep nesting).
 */
export function showJson(v: unknown, max = 40): string {
  if (typeof v === 'string') return v.length > max ? `${JSON.stringify(v.slice(0, max - 3)).slice(0, -1)}..."` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return v === undefined ? 'nothing' : describeJson(v);
}

/** A list of JSON values for a one-line message: each as showJson shows it, the first `items` of them, with the count of the rest. */
export function showJsonList(values: readonly unknown[], items = 8, max = 40): string {
  const shown = values.slice(0, items).map((v) => showJson(v, max));
  return `[${shown.join(', ')}${values.length > items ? `, ... (${values.length} in all)` : ''}]`;
}

/** "null", "an array", "a string", ... for messages. */
export function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
