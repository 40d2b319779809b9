/**
 * RFC 4180 CSV parsing for the MMLU files.
 *
 * - Fields are separated by commas; records end at `\n`, `\r\n` or a lone `\r`.
 * - A field that starts with `"` is quoted: everything up to the closing quote is kept exactly as it is
 *   (commas, `\n`, `\r\n`), and `""` inside it stands for one `"`. After the closing quote only a comma,
 *   a line break or the end of the file may follow.
 * - A quote inside an unquoted field is kept literally (as Python's csv and pandas do).
 * - A UTF-8 byte order mark at the start is skipped, and so are blank lines (as pandas does).
 *
 * Each row carries the 1-based line on which it starts, for error messages.
 */
import { UserError } from '../../runtime/errors.ts';

/** One CSV record and the (1-based) line of the file on which it starts. */
export interface CsvRow {
  line: number;
  fields: string[];
}

const COMMA = 44;
const LF = 10;
const CR = 13;
const QUOTE = 34;

/** Number of line breaks (`\n`, `\r\n`, lone `\r`) in text[from, to). */
function countLineBreaks(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c === LF) n++;
    else if (c === CR && text.charCodeAt(i + 1) !== LF) n++;
  }
  return n;
}

/**
 * Parses CSV text into rows. `source` names the file in error messages
 * (`<source>:<line>: unterminated quoted field ...`).
 */
export function parseCsv(text: string, source = '<csv>'): CsvRow[] {
  const rows: CsvRow[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (i < n) {
    const first = text.charCodeAt(i);
    if (first === LF || first === CR) {
      i += first === CR && text.charCodeAt(i + 1) === LF ? 2 : 1;
      line++;
      continue;
    }
    const rowLine = line;
    const fields: string[] = [];
    for (;;) {
      if (text.charCodeAt(i) === QUOTE) {
        const openLine = line;
        let value = '';
        let start = ++i;
        for (;;) {
          const q = text.indexOf('"', i);
          if (q < 0) {
            throw new UserError(`${source}:${openLine}: quoted field never closed (no matching '"' before the end of the file); `
              + 'close the quote, and write a quote inside a quoted field as ""');
          }
          line += countLineBreaks(text, i, q);
          if (text.charCodeAt(q + 1) === QUOTE) {
            value += text.slice(start, q + 1);
            i = start = q + 2;
            continue;
          }
          value += text.slice(start, q);
          i = q + 1;
          break;
        }
        fields.push(value);
        if (i < n) {
          const c = text.charCodeAt(i);
          if (c !== COMMA && c !== LF && c !== CR) {
            throw new UserError(`${source}:${line}: unexpected ${JSON.stringify(text[i])} after the closing quote of a field; `
              + 'a quote inside a quoted field must be doubled ("")');
          }
        }
      } else {
        let j = i;
        while (j < n) {
          const c = text.charCodeAt(j);
          if (c === COMMA || c === LF || c === CR) break;
          j++;
        }
        fields.push(text.slice(i, j));
        i = j;
      }
      if (i >= n) break;
      const c = text.charCodeAt(i);
      if (c === COMMA) {
        i++;
        continue;
      }
      i += c === CR && text.charCodeAt(i + 1) === LF ? 2 : 1;
      line++;
      break;
    }
    rows.push({ line: rowLine, fields });
  }
  return rows;
}
