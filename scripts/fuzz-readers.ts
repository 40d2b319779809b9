/**
 * A mutation fuzzer of mka's model readers (a dev script, not part of `npm test`; test/fuzz-readers.test.ts
 * holds the deterministic cases that gate merges). It starts from small valid inputs — GGUF files exported
 * from the demo model at f16, q8_0 and q4_0, the demo's safetensors directory (single and in two shards with
 * an index), a packed RTN-quantized demo,
 * llama2.c's stories260K.bin and tok512.bin, the demo's config.json, tokenizer.json and tokenizer_config.json
 * — and mutates them: bit flips (header and data), truncations at structural boundaries and random points,
 * every u64 count/length/offset/dimension and u32 type/count field set to 0, 1, ±1, huge, -1 as unsigned
 * and just past the end, duplicated keys and tensor names, ggml/safetensors dtypes swapped, dimensions
 * swapped or scaled against the metadata, NaN/Inf written into data and block scales, JSON numbers and
 * types changed. Each variant goes through the library's load path in a worker process (`runForward`, what
 * `mka forward --model` calls: tokenizer, config, checkpoint, every weight, a forward of a short text;
 * llama2.c inputs through `convertLlama2c` and then the same), under a heap cap, an RSS watchdog and a
 * per-variant deadline. Every fourth model variant loads with streamed layers instead (loadModel's streaming:
 * each layer read when the forward pass reaches it), and another fourth is also exported (`exportGguf`, q4_0),
 * which must load or refuse in one line, and leave no file when it refuses. Outcomes:
 *   ok       loaded, forward finite (a benign mutation)
 *   refused  a UserError of one line beginning with the file or model directory (or with the option
 *            whose value the model refuses, naming the model: a context shorter than the text)
 *   BUG      anything else: another exception (TypeError, RangeError, plain Error), a multi-line or
 *            unnamed message, a crash or signal, a hang, peak RSS growth over the cap, non-finite logits,
 *            tfjs tensors left behind, output left behind by a refused conversion or export.
 *
 *   nice -n 19 node --import tsx scripts/fuzz-readers.ts [--scale 1] [--only gguf,safetensors,packed,sharded,llama2c,json] [--seed 1]
 *
 * Prints one line per bug (--verbose: per variant) and a table of counts; exit 1 when any bug was found.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Peak RSS growth of one variant that counts as a runaway allocation (the inputs are 2 MB at most). */
const RSS_GROWTH_CAP = 512 * 1024 * 1024;
/** The worker is killed above this RSS (the watchdog; the V8 heap is capped separately). */
const RSS_KILL = 1536 * 1024 * 1024;
const HEAP_MB = 1024;
const DEADLINE_MS = 60_000;
const TEXT = 'Question: What is 7 + 5?\nAnswer: A';

// ---------------------------------------------------------------------------------------------------------
// the worker: runs variants one at a time, a JSON line in, a JSON line out

export interface Job {
  id: number; kind: 'model' | 'llama2c'; model?: string; checkpoint?: string; tokenizer?: string; out?: string; names: string[];
  /** Also export the model to this GGUF file: when refused, no file (nor temporary) is left. */
  exportTo?: string;
  /** Load with layers streamed from the file (read when the forward pass reaches them) instead of through runForward. */
  streaming?: boolean;
}
interface Result { id: number; outcome: 'ok' | 'refused' | 'bug'; detail: string; rssGrowth: number }

async function worker(): Promise<void> {
  const { initBackend } = await import('../src/runtime/backend.ts');
  const { tf } = await import('../src/runtime/tf.ts');
  const { runForward } = await import('../src/model/inspect.ts');
  const { convertLlama2c } = await import('../src/convert/llama2c.ts');
  const { UserError } = await import('../src/runtime/errors.ts');
  const { exportGguf } = await import('../src/export/gguf.ts');
  const { loadTokenizer } = await import('../src/tokenizer/tokenizer.ts');
  const { loadModel, disposeModel } = await import('../src/model/model.ts');
  const { forward } = await import('../src/model/forward.ts');
  await initBackend('native', { log: () => {} });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const job = JSON.parse(line) as Job;
    const before = process.resourceUsage().maxRSS * 1024;
    const tensors = tf.memory().numTensors;
    let outcome: Result['outcome'] = 'ok', detail = '', converted = false;
    try {
      let model = job.model!;
      if (job.kind === 'llama2c') {
        await convertLlama2c({ checkpoint: job.checkpoint!, tokenizer: job.tokenizer!, out: job.out! });
        converted = true;
        model = job.out!;
      }
      let logits: number[];
      if (job.streaming) {
        const ids = (await loadTokenizer(model)).encode(TEXT);
        const m = loadModel(model, { streaming: true });
        try {
          const r = forward(m, [ids], { logits: 'last' });
          logits = Array.from(r.logits!.dataSync());
          r.logits!.dispose();
        } finally {
          disposeModel(m);
        }
      } else {
        logits = (await runForward({ model, text: TEXT, topK: 3, logits: 'last' })).logits!.flat();
      }
      const bad = logits.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) { outcome = 'bug'; detail = `non-finite logit ${logits[bad]} at ${bad}, nothing refused`; }
    } catch (e) {
      const m = e instanceof Error ? e.message : String(e);
      if (!(e instanceof UserError)) { outcome = 'bug'; detail = `${(e as Error)?.name ?? typeof e}: ${((e as Error)?.stack ?? m).split('\n').slice(0, 4).join(' | ')}`; }
      else if (/[\n\r]/.test(m)) { outcome = 'bug'; detail = `more than one line: ${JSON.stringify(m.slice(0, 300))}`; }
      else if (m.length > 1000) { outcome = 'bug'; detail = `a message of ${m.length} characters`; }
      else if (!job.names.some((n) => m.startsWith(n) || (m.startsWith('--') && m.includes(n)))) { outcome = 'bug'; detail = `does not begin with the file: ${m.slice(0, 300)}`; }
      else { outcome = 'refused'; detail = m; }
      if (job.kind === 'llama2c' && !converted && outcome === 'refused' && existsSync(job.out!)) { outcome = 'bug'; detail = `refused but left ${job.out}: ${m}`; }
    }
    if (job.exportTo && outcome !== 'bug') {
      const before = readdirSync(dirname(job.exportTo)).length;
      let exported = true;
      try {
        await exportGguf({ model: job.model!, out: job.exportTo, type: 'q4_0', quiet: true });
      } catch (e) {
        exported = false;
        if (!(e instanceof UserError) || /[\n\r]/.test((e as Error).message)) { outcome = 'bug'; detail = `export: ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}`; }
      }
      if (outcome !== 'bug' && !exported && existsSync(job.exportTo)) { outcome = 'bug'; detail = `a refused export left ${job.exportTo}`; }
      rmSync(job.exportTo, { force: true });
      if (outcome !== 'bug' && readdirSync(dirname(job.exportTo)).length !== before) { outcome = 'bug'; detail = `export left ${readdirSync(dirname(job.exportTo)).join(', ')}`; }
    }
    if (job.kind === 'llama2c') {
      const left = readdirSync(dirname(job.out!)).filter((f) => f !== 'model.bin' && f !== 'tok.bin' && f !== 'out');
      if (left.length && outcome !== 'bug') { outcome = 'bug'; detail = `left ${left.join(', ')} beside the output`; }
      rmSync(job.out!, { recursive: true, force: true });
    }
    if (tf.memory().numTensors !== tensors && outcome !== 'bug') { outcome = 'bug'; detail = `tfjs tensors ${tensors} -> ${tf.memory().numTensors}; ${detail}`; }
    const rssGrowth = process.resourceUsage().maxRSS * 1024 - before;
    if (rssGrowth > RSS_GROWTH_CAP && outcome !== 'bug') { outcome = 'bug'; detail = `peak RSS grew ${(rssGrowth / 2 ** 20).toFixed(0)} MiB; ${detail}`; }
    process.stdout.write(JSON.stringify({ id: job.id, outcome, detail, rssGrowth } satisfies Result) + '\n');
  }
}

// ---------------------------------------------------------------------------------------------------------
// the parent: seeds, variants, the worker pool of one, the tally

/** A fixed-seed generator (the same variants on every run with the same --seed). */
export function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const t = (s ^ (s >>> 15)) >>> 0;
    return Math.floor((t / 2 ** 32) * n);
  };
}

export interface Variant { family: string; cls: string; label: string; apply: () => Job }

/** A field of a binary header: where it is, how wide, what it holds. */
interface Field { pos: number; size: 4 | 8; what: string; value: bigint }

/** The structure of a GGUF file, walked independently of src/gguf/reader.ts. */
function walkGguf(b: Buffer): { fields: Field[]; boundaries: number[]; keys: { pos: number; len: number; key: string }[]; names: { pos: number; len: number; name: string }[]; dataStart: number; tensors: { name: string; type: number; dims: number[]; rel: number; dimsPos: number; typePos: number }[] } {
  const fields: Field[] = [], boundaries: number[] = [], keys: { pos: number; len: number; key: string }[] = [], names: { pos: number; len: number; name: string }[] = [];
  let p = 0;
  const f = (size: 4 | 8, what: string): bigint => {
    const value = size === 4 ? BigInt(b.readUInt32LE(p)) : b.readBigUInt64LE(p);
    fields.push({ pos: p, size, what, value });
    p += size;
    return value;
  };
  const str = (what: string) => { const n = Number(f(8, `length of ${what}`)); const s = b.subarray(p, p + n).toString('utf8'); p += n; return { n, s }; };
  const SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  f(4, 'magic'); f(4, 'version');
  const nT = Number(f(8, 'tensor count')), nKv = Number(f(8, 'metadata count'));
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    boundaries.push(p);
    const kpos = p + 8;
    const { n, s: key } = str(`key ${i}`);
    keys.push({ pos: kpos, len: n, key });
    const type = Number(f(4, `type of ${key}`));
    if (type === 9) {
      const et = Number(f(4, `element type of ${key}`));
      const cnt = Number(f(8, `count of ${key}`));
      if (et === 8) for (let j = 0; j < cnt; j++) { if (j < 4 || j === cnt - 1) str(`${key}[${j}]`); else { const n = Number(b.readBigUInt64LE(p)); p += 8 + n; } }
      else p += cnt * SIZE[et];
    } else if (type === 8) str(`value of ${key}`);
    else if (type === 4) { const v = f(4, `value of ${key}`); if (key === 'general.alignment') alignment = Number(v); }
    else if (type === 5) f(4, `value of ${key}`);
    else p += SIZE[type];
  }
  const tensors: { name: string; type: number; dims: number[]; rel: number; dimsPos: number; typePos: number }[] = [];
  for (let i = 0; i < nT; i++) {
    boundaries.push(p);
    const npos = p + 8;
    const { n, s: name } = str(`name of tensor ${i}`);
    names.push({ pos: npos, len: n, name });
    const nd = Number(f(4, `dimension count of ${name}`));
    const dimsPos = p;
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) dims.push(Number(f(8, `dimension ${d} of ${name}`)));
    const typePos = p;
    const type = Number(f(4, `type of ${name}`));
    const rel = Number(f(8, `offset of ${name}`));
    tensors.push({ name, type, dims, rel, dimsPos, typePos });
  }
  boundaries.push(p);
  const dataStart = Math.ceil(p / alignment) * alignment;
  boundaries.push(dataStart);
  return { fields, boundaries, keys, names, dataStart, tensors };
}

/** u64 values to try in a count/length/offset/dimension field `f` of a file of `size` bytes. */
function u64Values(f: Field, size: number): bigint[] {
  const left = BigInt(size - f.pos - 8);
  return [0n, 1n, f.value - 1n, f.value + 1n, f.value * 2n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 8n, left, left + 1n, BigInt(size)]
    .filter((v) => v >= 0n && v < 2n ** 64n && v !== f.value);
}
const U32_VALUES = [0n, 1n, 2n, 3n, 4n, 5n, 7n, 8n, 9n, 12n, 13n, 30n, 41n, 42n, 255n, 2n ** 31n, 2n ** 32n - 1n];

function put(b: Buffer, f: Field, v: bigint): Buffer {
  const c = Buffer.from(b);
  if (f.size === 4) c.writeUInt32LE(Number(v & 0xffffffffn), f.pos); else c.writeBigUInt64LE(v, f.pos);
  return c;
}

export function flip(b: Buffer, rnd: (n: number) => number, from: number, to: number, bits = 1): Buffer {
  const c = Buffer.from(b);
  for (let i = 0; i < bits; i++) c[from + rnd(to - from)] ^= 1 << rnd(8);
  return c;
}

/** Samples up to `n` elements of `xs` deterministically (all when fewer). */
export function sample<T>(xs: T[], n: number, rnd: (n: number) => number): T[] {
  if (xs.length <= n) return xs;
  const out: T[] = [], taken = new Set<number>();
  while (out.length < n) { const i = rnd(xs.length); if (!taken.has(i)) { taken.add(i); out.push(xs[i]); } }
  return out;
}

function safetensorsParts(b: Buffer): { n: number; header: Record<string, any>; headerText: string; data: Buffer } {
  const n = Number(b.readBigUInt64LE(0));
  const headerText = b.subarray(8, 8 + n).toString('utf8');
  return { n, header: JSON.parse(headerText), headerText, data: b.subarray(8 + n) };
}
function joinSafetensors(headerText: string, data: Buffer): Buffer {
  const h = Buffer.from(headerText, 'utf8'), len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** Writes an f16 NaN/Inf word, or an f32 one, at `pos`. */
function poison(b: Buffer, pos: number, width: 2 | 4, nan: boolean): Buffer {
  const c = Buffer.from(b);
  if (width === 2) c.writeUInt16LE(nan ? 0x7e00 : 0x7c00, pos); else c.writeFloatLE(nan ? NaN : Infinity, pos);
  return c;
}

const GGML_BLOCK: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 8: [32, 34], 30: [1, 2] };

export function ggufVariants(seedFile: string, tag: string, work: string, scale: number, rnd: (n: number) => number): Variant[] {
  const good = readFileSync(seedFile);
  const w = walkGguf(good);
  const file = join(work, `${tag}.gguf`);
  const v: Variant[] = [];
  const fam = `gguf ${tag}`;
  const add = (cls: string, label: string, bytes: () => Buffer) => v.push({ family: fam, cls, label, apply: () => { writeFileSync(file, bytes()); return { id: 0, kind: 'model', model: file, names: [file] }; } });
  add('benign', 'unchanged', () => good);
  // truncations: at boundaries, just before/after them, at random points, and in the data
  for (const at of sample([0, 3, 4, 8, 16, 23, 24, ...w.boundaries.flatMap((x) => [x - 1, x, x + 1])], Math.round(40 * scale), rnd)) add('truncation', `truncated at ${at}`, () => good.subarray(0, at));
  for (let i = 0; i < Math.round(20 * scale); i++) { const at = w.dataStart + rnd(good.length - w.dataStart); add('truncation', `truncated in the data at ${at}`, () => good.subarray(0, at)); }
  // every u64 field (counts, lengths, dimensions, offsets) at odd values; u32 ones (types, dimension counts) at odd values
  const u64s = w.fields.filter((f) => f.size === 8), u32s = w.fields.filter((f) => f.size === 4);
  for (const f of sample(u64s, Math.round(60 * scale), rnd)) for (const x of u64Values(f, good.length)) add('u64 field', `${f.what} = ${x}`, () => put(good, f, x));
  for (const f of sample(u32s, Math.round(40 * scale), rnd)) for (const x of U32_VALUES) if (x !== f.value) add('u32 field', `${f.what} = ${x}`, () => put(good, f, x));
  // tensor types swapped for every ggml type the reader knows or not; dims swapped, scaled
  for (const t of sample(w.tensors, Math.round(8 * scale), rnd)) {
    for (const ty of [0, 1, 2, 3, 6, 7, 8, 10, 12, 14, 24, 28, 30]) if (ty !== t.type) add('dtype', `${t.name} type ${ty}`, () => { const c = Buffer.from(good); c.writeUInt32LE(ty, t.typePos); return c; });
    if (t.dims.length === 2) {
      add('shape', `${t.name} dims swapped`, () => { const c = Buffer.from(good); c.writeBigUInt64LE(BigInt(t.dims[1]), t.dimsPos); c.writeBigUInt64LE(BigInt(t.dims[0]), t.dimsPos + 8); return c; });
      add('shape', `${t.name} rows halved`, () => { const c = Buffer.from(good); c.writeBigUInt64LE(BigInt(t.dims[1] >> 1), t.dimsPos + 8); return c; });
      add('shape', `${t.name} columns doubled, rows halved`, () => { const c = Buffer.from(good); c.writeBigUInt64LE(BigInt(t.dims[0] * 2), t.dimsPos); c.writeBigUInt64LE(BigInt(t.dims[1] >> 1), t.dimsPos + 8); return c; });
    }
  }
  // duplicated names: a key or tensor name overwritten by another of the same length
  const dup = <T extends { pos: number; len: number }>(xs: T[], what: string, show: (x: T) => string) => {
    const pairs: [T, T][] = [];
    for (let i = 0; i < xs.length; i++) for (let j = 0; j < xs.length; j++) if (i !== j && xs[i].len === xs[j].len) pairs.push([xs[i], xs[j]]);
    for (const [a, b] of sample(pairs, Math.round(10 * scale), rnd)) add('duplicate', `${what} ${show(b)} renamed ${show(a)}`, () => { const c = Buffer.from(good); good.copy(c, b.pos, a.pos, a.pos + a.len); return c; });
  };
  dup(w.keys, 'key', (k) => k.key);
  dup(w.names, 'tensor', (t) => t.name);
  // metadata numbers against the tensors (shape/metadata mismatch): every u32 value at other sizes
  for (const f of w.fields.filter((x) => x.size === 4 && x.what.startsWith('value of '))) {
    for (const x of [0n, 1n, 3n, f.value * 2n, f.value / 2n, 2n ** 31n - 1n, 2n ** 32n - 1n]) if (x !== f.value) add('metadata', `${f.what} = ${x}`, () => put(good, f, x));
  }
  // bit flips: header, data; NaN/Inf in data words and block scales
  for (let i = 0; i < Math.round(120 * scale); i++) { const bits = 1 + rnd(3); add('header flip', `header flip ${i} (${bits} bits)`, () => flip(good, rng(1000 + i), 0, w.dataStart, bits)); }
  for (let i = 0; i < Math.round(30 * scale); i++) add('data flip', `data flip ${i}`, () => flip(good, rng(2000 + i), w.dataStart, good.length, 4));
  for (const t of sample(w.tensors, Math.round(12 * scale), rnd)) {
    const [block, bytes] = GGML_BLOCK[t.type] ?? [1, 4];
    const at = w.dataStart + t.rel + (block === 1 ? 0 : bytes * rnd(Math.max(1, (t.dims.reduce((a, b) => a * b, 1) / block) | 0)));
    const width = t.type === 0 ? 4 : 2;
    for (const nan of [true, false]) add('non-finite', `${t.name} ${nan ? 'NaN' : 'Inf'} ${block === 1 ? 'value' : 'block scale'} at ${at}`, () => poison(good, at, width, nan));
  }
  return v;
}

export function safetensorsVariants(dirSeed: string, tag: string, work: string, scale: number, rnd: (n: number) => number): Variant[] {
  const dir = join(work, tag);
  cpSync(dirSeed, dir, { recursive: true });
  const file = join(dir, 'model.safetensors');
  const good = readFileSync(file);
  const { n, header, data } = safetensorsParts(good);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const v: Variant[] = [];
  const fam = `safetensors ${tag}`;
  const add = (cls: string, label: string, bytes: () => Buffer) => v.push({
    family: fam, cls, label,
    apply: () => { writeFileSync(file, bytes()); return { id: 0, kind: 'model', model: dir, names: [file, dir] }; },
  });
  add('benign', 'unchanged', () => good);
  for (const at of [0, 7, 8, 9, 8 + n - 1, 8 + n, 8 + n + 1, good.length - 1, ...Array.from({ length: Math.round(20 * scale) }, () => rnd(good.length))]) add('truncation', `truncated at ${at}`, () => good.subarray(0, at));
  const lenField: Field = { pos: 0, size: 8, what: 'header length', value: BigInt(n) };
  for (const x of u64Values(lenField, good.length)) add('u64 field', `header length = ${x}`, () => put(good, lenField, x));
  for (let i = 0; i < Math.round(120 * scale); i++) add('header flip', `header flip ${i}`, () => flip(good, rng(3000 + i), 8, 8 + n, 1 + (i % 3)));
  for (let i = 0; i < Math.round(20 * scale); i++) add('data flip', `data flip ${i}`, () => flip(good, rng(4000 + i), 8 + n, good.length, 4));
  const edit = (cls: string, label: string, h: Record<string, any>) => add(cls, label, () => joinSafetensors(JSON.stringify(h), data));
  for (const name of sample(names, Math.round(10 * scale), rnd)) {
    const t = header[name];
    const w = (patch: Record<string, unknown>) => ({ ...header, [name]: { ...t, ...patch } });
    for (const dt of ['F32', 'F16', 'BF16', 'I8', 'U8', 'I32', 'F64', 'BOOL', 'f32']) if (dt !== t.dtype) edit('dtype', `${name} dtype ${dt}`, w({ dtype: dt }));
    const [b0, b1] = t.data_offsets as number[];
    for (const o of [[0, 0], [b0, b0], [b1, b0], [b0 + 1, b1 + 1], [b0, data.length + 1], [data.length, data.length + b1 - b0], [2 ** 53 - 2, 2 ** 53 + b1 - b0 - 2], [-1, b1 - b0 - 1]]) edit('offsets', `${name} data_offsets [${o}]`, w({ data_offsets: o }));
    if (t.shape.length === 2) {
      edit('shape', `${name} shape swapped`, w({ shape: [t.shape[1], t.shape[0]] }));
      edit('shape', `${name} shape [2r, c/2]`, w({ shape: [t.shape[0] * 2, t.shape[1] / 2] }));
      edit('shape', `${name} shape flat`, w({ shape: [t.shape[0] * t.shape[1]] }));
    }
    edit('shape', `${name} shape [2^53]`, w({ shape: [2 ** 53], data_offsets: [b0, b0 + 2 ** 53 * 4] }));
    edit('shape', `${name} shape [2^26, 2^26]`, w({ shape: [2 ** 26, 2 ** 26], data_offsets: [0, 2 ** 52 * (t.dtype === 'F32' ? 4 : 1)] }));
    // duplicated: the raw JSON text holds the name twice (JSON.parse keeps the last)
    const other = header[names[rnd(names.length)]];
    add('duplicate', `${name} twice in the header`, () => joinSafetensors(`{${JSON.stringify(name)}:${JSON.stringify(other)},` + JSON.stringify(header).slice(1), data));
    for (const nan of [true, false]) {
      if (t.dtype === 'I8' || t.dtype === 'U8') continue;
      const width = t.dtype === 'F32' ? 4 : 2;
      add('non-finite', `${name} ${nan ? 'NaN' : 'Inf'}`, () => poison(good, 8 + n + b0 + width * rnd((b1 - b0) / width), width, nan));
    }
  }
  return v;
}

function shardedVariants(dirSeed: string, work: string, scale: number, rnd: (n: number) => number): Variant[] {
  const dir = join(work, 'sharded');
  cpSync(dirSeed, dir, { recursive: true });
  rmSync(join(dir, 'model.safetensors'));
  const { header, data } = safetensorsParts(readFileSync(join(dirSeed, 'model.safetensors')));
  const names = Object.keys(header).filter((k) => k !== '__metadata__').sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  const shardNames = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const shards = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)].map((group) => {
    const h: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    const parts: Buffer[] = [];
    let at = 0;
    for (const n of group) {
      const [b0, b1] = header[n].data_offsets;
      h[n] = { ...header[n], data_offsets: [at, at + b1 - b0] };
      parts.push(data.subarray(b0, b1));
      at += b1 - b0;
    }
    return joinSafetensors(JSON.stringify(h), Buffer.concat(parts));
  });
  const weightMap = Object.fromEntries(names.map((n, i) => [n, shardNames[i < names.length >> 1 ? 0 : 1]]));
  const index = { metadata: { total_size: data.length }, weight_map: weightMap };
  const indexFile = join(dir, 'model.safetensors.index.json');
  const v: Variant[] = [];
  const add = (cls: string, label: string, indexText: () => Buffer | string, shard2: () => Buffer = () => shards[1]) => v.push({
    family: 'safetensors sharded', cls, label,
    apply: () => {
      writeFileSync(join(dir, shardNames[0]), shards[0]);
      writeFileSync(join(dir, shardNames[1]), shard2());
      writeFileSync(indexFile, indexText());
      return { id: 0, kind: 'model', model: dir, names: [indexFile, join(dir, shardNames[1]), dir] };
    },
  });
  const good = Buffer.from(JSON.stringify(index));
  add('benign', 'unchanged', () => good);
  for (let i = 0; i < Math.round(40 * scale); i++) add('byte flip', `index flip ${i}`, () => flip(good, rng(8000 + i), 0, good.length, 1 + (i % 2)));
  for (let i = 0; i < Math.round(6 * scale); i++) { const at = rnd(good.length); add('truncation', `index truncated at ${at}`, () => good.subarray(0, at)); }
  for (const n of sample(names, Math.round(6 * scale), rnd)) {
    for (const shard of [shardNames[0] === weightMap[n] ? shardNames[1] : shardNames[0], 'missing.safetensors', '../x.safetensors', '/etc/hostname', '', '.', 'model.safetensors.index.json', `./${weightMap[n]}`, 'tokenizer.json', 5, null]) {
      add('index entry', `${n} in ${JSON.stringify(shard)}`, () => JSON.stringify({ ...index, weight_map: { ...weightMap, [n]: shard } }));
    }
    add('index entry', `${n} dropped`, () => { const { [n]: _, ...rest } = weightMap; return JSON.stringify({ ...index, weight_map: rest }); });
    add('duplicate', `${n} twice, the first in the other shard`, () => `{"weight_map": {${JSON.stringify(n)}: "${shardNames[0] === weightMap[n] ? shardNames[1] : shardNames[0]}",` + JSON.stringify(index).slice('{"weight_map":{'.length + JSON.stringify(index).indexOf('"weight_map":') - 1));
  }
  add('index entry', 'an extra tensor', () => JSON.stringify({ ...index, weight_map: { ...weightMap, 'model.extra.weight': shardNames[0] } }));
  for (const x of [null, [], 5, 'x', {}]) add('index entry', `weight_map = ${JSON.stringify(x)}`, () => JSON.stringify({ ...index, weight_map: x }));
  const n2 = Number(shards[1].readBigUInt64LE(0));
  for (const at of [0, 8, 8 + n2 - 1, 8 + n2, shards[1].length - 1, ...Array.from({ length: Math.round(6 * scale) }, () => rnd(shards[1].length))]) add('truncation', `shard 2 truncated at ${at}`, () => good, () => shards[1].subarray(0, at));
  for (let i = 0; i < Math.round(30 * scale); i++) add('header flip', `shard 2 header flip ${i}`, () => good, () => flip(shards[1], rng(9000 + i), 8, 8 + n2, 1 + (i % 3)));
  return v;
}

export function jsonVariants(dirSeed: string, work: string, scale: number, rnd: (n: number) => number): Variant[] {
  const dir = join(work, 'json');
  cpSync(dirSeed, dir, { recursive: true });
  const v: Variant[] = [];
  for (const name of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
    const file = join(dir, name);
    const good = readFileSync(file);
    const obj = JSON.parse(good.toString('utf8'));
    const add = (cls: string, label: string, bytes: () => Buffer | string) => v.push({
      family: `json ${name}`, cls, label,
      apply: () => {
        for (const n of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) if (n !== name) cpSync(join(dirSeed, n), join(dir, n));
        writeFileSync(file, bytes()); return { id: 0, kind: 'model', model: dir, names: [file, dir] };
      },
    });
    for (let i = 0; i < Math.round((name === 'tokenizer.json' ? 40 : 60) * scale); i++) add('byte flip', `flip ${i}`, () => flip(good, rng(5000 + i), 0, good.length, 1 + (i % 2)));
    for (let i = 0; i < Math.round(8 * scale); i++) { const at = rnd(good.length); add('truncation', `truncated at ${at}`, () => good.subarray(0, at)); }
    // every top-level field (and the model's tables of tokenizer.json) at odd values
    const values: unknown[] = [0, -1, 1, 0.5, 2 ** 31, 2 ** 32 + 1, 2 ** 53 + 2, 1e308, -1e308, '', '7', null, true, [], {}, [7], { a: 1 }];
    const targets: [string[], unknown][] = Object.keys(obj).map((k) => [[k], obj[k]]);
    if (name === 'tokenizer.json') for (const k of Object.keys(obj.model ?? {})) targets.push([['model', k], obj.model[k]]);
    for (const [path] of targets) {
      for (const x of sample(values, Math.round((name === 'tokenizer.json' ? 5 : values.length) * scale), rnd)) {
        add('field value', `${path.join('.')} = ${JSON.stringify(x)}`, () => {
          const o = structuredClone(obj);
          let at = o;
          for (const k of path.slice(0, -1)) at = at[k];
          at[path[path.length - 1]] = x;
          return JSON.stringify(o);
        });
      }
    }
    // duplicated keys in the text: the last one wins, as in Python's json
    for (const k of sample(Object.keys(obj), Math.round(4 * scale), rnd)) add('duplicate', `${k} twice`, () => `{${JSON.stringify(k)}: 0,` + JSON.stringify(obj).slice(1));
    if (name === 'tokenizer.json') {
      const vocab = obj.model.vocab as Record<string, number>;
      const ks = Object.keys(vocab);
      for (const x of [-1, 2 ** 31, 2 ** 53 + 2, 1e308, 0.5, 511, 512, 513]) {
        add('field value', `vocab id ${x}`, () => { const o = structuredClone(obj); o.model.vocab[ks[rnd(ks.length)]] = x; return JSON.stringify(o); });
      }
      for (const x of [-1, 2 ** 31, 512, 1e9, 0.5, '1']) add('field value', `added token id ${x}`, () => { const o = structuredClone(obj); o.added_tokens = [...(o.added_tokens ?? []), { id: x, content: '<x>', special: true }]; return JSON.stringify(o); });
    }
  }
  return v;
}

function llama2cVariants(work: string, shared: string, scale: number, rnd: (n: number) => number): Variant[] {
  const dir = join(work, 'llama2c');
  mkdirSync(dir, { recursive: true });
  const bin = readFileSync(join(shared, 'models/stories260K/stories260K.bin'));
  const tok = readFileSync(join(shared, 'models/stories260K/tok512.bin'));
  const ck = join(dir, 'model.bin'), tk = join(dir, 'tok.bin'), out = join(dir, 'out');
  const v: Variant[] = [];
  const add = (cls: string, label: string, b: Buffer, t: Buffer, bad: string) => v.push({
    family: 'llama2c', cls, label,
    apply: () => { writeFileSync(ck, b); writeFileSync(tk, t); return { id: 0, kind: 'llama2c', checkpoint: ck, tokenizer: tk, out, names: [bad, out] }; },
  });
  add('benign', 'unchanged', bin, tok, ck);
  const v1 = bin.readUInt32LE(0) === 0x616b3432;
  const base = v1 ? 8 : 0;
  for (let f = 0; f < 7; f++) {
    const was = bin.readInt32LE(base + 4 * f);
    for (const x of [0, -1, 1, 2, 3, was - 1, was + 1, was * 2, was >> 1, 1000, 2 ** 16, 2 ** 31 - 1, -(2 ** 31)]) {
      if (x === was) continue;
      const b = Buffer.from(bin);
      b.writeInt32LE(x | 0, base + 4 * f);
      add('header field', `header field ${f} = ${x}`, b, tok, ck);
    }
  }
  for (const at of [0, 3, 4, 27, 28, 29, 255, 256, 257, bin.length - 4, bin.length - 1, ...Array.from({ length: Math.round(10 * scale) }, () => rnd(bin.length))]) add('truncation', `checkpoint truncated at ${at}`, bin.subarray(0, at), tok, ck);
  add('truncation', 'checkpoint 4 bytes longer', Buffer.concat([bin, Buffer.alloc(4)]), tok, ck);
  for (let i = 0; i < Math.round(20 * scale); i++) add('data flip', `checkpoint flip ${i}`, flip(bin, rng(6000 + i), 28, bin.length, 4), tok, ck);
  for (let i = 0; i < Math.round(6 * scale); i++) add('non-finite', `checkpoint NaN ${i}`, poison(bin, 28 + 4 * rnd((bin.length - 28) / 4), 4, i % 2 === 0), tok, ck);
  for (const at of [0, 3, 4, 5, 11, 12, 13, tok.length - 1, ...Array.from({ length: Math.round(8 * scale) }, () => rnd(tok.length))]) add('truncation', `tokenizer truncated at ${at}`, bin, tok.subarray(0, at), tk);
  for (const x of [0, -1, 1, 2 ** 31 - 1, 1000]) { const t = Buffer.from(tok); t.writeInt32LE(x, 0); add('u32 field', `tokenizer max_token_length = ${x}`, bin, t, tk); }
  // token records: f32 score, i32 length, bytes; walk them to hit lengths and scores
  const recs: { pos: number; len: number }[] = [];
  for (let p = 4; p + 8 <= tok.length;) { const len = tok.readInt32LE(p + 4); recs.push({ pos: p, len }); p += 8 + len; }
  for (const r of sample(recs, Math.round(12 * scale), rnd)) {
    for (const x of [0, -1, r.len + 1, 2 ** 31 - 1, tok.length]) { const t = Buffer.from(tok); t.writeInt32LE(x, r.pos + 4); add('u32 field', `token at ${r.pos} length ${x}`, bin, t, tk); }
    for (const nan of [true, false]) { const t = Buffer.from(tok); t.writeFloatLE(nan ? NaN : -Infinity, r.pos); add('non-finite', `token at ${r.pos} score ${nan ? 'NaN' : '-Inf'}`, bin, t, tk); }
  }
  for (let i = 0; i < Math.round(30 * scale); i++) add('byte flip', `tokenizer flip ${i}`, bin, flip(tok, rng(7000 + i), 0, tok.length, 1 + (i % 3)), tk);
  return v;
}

/** One worker process at a time, restarted after a crash, a hang or the RSS watchdog. */
class Pool {
  private child: ChildProcess | null = null;
  private pending: { resolve: (r: Result) => void; job: Job; child: ChildProcess; timer: NodeJS.Timeout; watch: NodeJS.Timeout } | null = null;
  private stderr = '';

  private start(): ChildProcess {
    const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, '--import', 'tsx', fileURLToPath(import.meta.url), '--worker'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, MKA_QUIET: '1' } });
    this.stderr = '';
    child.stderr!.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000); });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const r = JSON.parse(line) as Result;
      const p = this.pending;
      if (p && r.id === p.job.id) { this.pending = null; clearTimeout(p.timer); clearInterval(p.watch); p.resolve(r); }
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      const p = this.pending;
      if (!p || p.child !== child) return;
      this.pending = null; clearTimeout(p.timer); clearInterval(p.watch);
      const why = /heap out of memory|Allocation failed/.test(this.stderr) ? 'V8 heap out of memory' : signal ? `signal ${signal}` : `exit ${code}`;
      p.resolve({ id: p.job.id, outcome: 'bug', detail: `worker died (${why}): ${this.stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 400)}`, rssGrowth: 0 });
    });
    return child;
  }

  run(job: Job): Promise<Result> {
    this.child ??= this.start();
    const child = this.child;
    return new Promise((res) => {
      const kill = (detail: string) => {
        const p = this.pending;
        if (!p) return;
        this.pending = null; clearTimeout(p.timer); clearInterval(p.watch);
        child.kill('SIGKILL');
        if (this.child === child) this.child = null;
        res({ id: job.id, outcome: 'bug', detail, rssGrowth: 0 });
      };
      const timer = setTimeout(() => kill(`hang: no answer in ${DEADLINE_MS / 1000} s`), DEADLINE_MS);
      const watch = setInterval(() => {
        try {
          const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
          if (rss > RSS_KILL) kill(`RSS ${(rss / 2 ** 20).toFixed(0)} MiB, over the ${RSS_KILL / 2 ** 20} MiB watchdog`);
        } catch { /* exited */ }
      }, 50);
      this.pending = { resolve: res, job, child, timer, watch };
      child.stdin!.write(JSON.stringify(job) + '\n');
    });
  }

  close(): void {
    this.child?.stdin!.end();
    this.child = null;
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string, d: string) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : d; };
  const scale = Number(opt('scale', '1'));
  const seed = Number(opt('seed', '1'));
  const verbose = args.includes('--verbose');
  const only = new Set(opt('only', 'gguf,safetensors,packed,sharded,llama2c,json').split(','));
  const shared = process.env.MKA_SHARED ?? '/work/shared';
  const work = mkdtempSync(join(tmpdir(), 'mka-fuzz-readers-'));
  const rnd = rng(seed);
  const mka = (...a: string[]) => execFileSync(process.execPath, [join(ROOT, 'bin/mka.mjs'), ...a, '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    const seeds = join(work, 'seeds');
    mkdirSync(seeds);
    const exportDir = join(work, 'export');
    mkdirSync(exportDir);
    const variants: Variant[] = [];
    if (only.has('gguf')) {
      for (const type of ['f16', 'q8_0', 'q4_0']) {
        const f = join(seeds, `demo-${type}.gguf`);
        mka('export', 'gguf', '--model', join(ROOT, 'models/demo'), '--type', type, '--out', f);
        variants.push(...ggufVariants(f, type, work, scale, rnd));
      }
    }
    if (only.has('safetensors')) variants.push(...safetensorsVariants(join(ROOT, 'models/demo'), 'demo', work, scale, rnd));
    if (only.has('packed')) {
      const q = join(seeds, 'rtn');
      mka('quantize', '--model', join(ROOT, 'models/demo'), '--method', 'rtn', '--out', q);
      variants.push(...safetensorsVariants(q, 'rtn', work, scale, rnd));
      // quantization_config against the packed tensors
      const cfgFile = join(work, 'rtn', 'config.json');
      const cfg = JSON.parse(readFileSync(join(q, 'config.json'), 'utf8'));
      for (const [k, vals] of Object.entries({ bits: [2, 3, 8, 16], group_size: [0, 16, 32, 64, 256, 2 ** 31], sym: [false], act_bits: [8, 4], quant_method: ['gptq', 'awq'] } as Record<string, unknown[]>)) {
        for (const x of vals) {
          variants.push({
            family: 'safetensors rtn', cls: 'metadata', label: `quantization_config.${k} = ${JSON.stringify(x)}`,
            apply: () => {
              cpSync(join(q, 'model.safetensors'), join(work, 'rtn', 'model.safetensors'));
              writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: { ...cfg.quantization_config, [k]: x } }));
              return { id: 0, kind: 'model', model: join(work, 'rtn'), names: [cfgFile, join(work, 'rtn')] };
            },
          });
        }
      }
      variants.push({ family: 'safetensors rtn', cls: 'benign', label: 'config restored', apply: () => { writeFileSync(cfgFile, JSON.stringify(cfg)); return { id: 0, kind: 'model', model: join(work, 'rtn'), names: [] }; } });
    }
    if (only.has('sharded')) variants.push(...shardedVariants(join(ROOT, 'models/demo'), work, scale, rnd));
    if (only.has('llama2c')) variants.push(...llama2cVariants(work, shared, scale, rnd));
    if (only.has('json')) variants.push(...jsonVariants(join(ROOT, 'models/demo'), work, scale, rnd));

    process.stderr.write(`fuzz-readers: ${variants.length} variants (scale ${scale}, seed ${seed})\n`);
    const pool = new Pool();
    const tally = new Map<string, { ok: number; refused: number; bug: number }>();
    const bugs: string[] = [];
    const t0 = Date.now();
    let maxGrowth = 0;
    for (const [i, variant] of variants.entries()) {
      // the rtn directory's config.json: restored before the safetensors variants that need it
      const job: Job = { ...variant.apply(), id: i };
      if (job.kind === 'model' && i % 4 === 0) job.exportTo = join(exportDir, 'out.gguf');
      if (job.kind === 'model' && i % 4 === 2) job.streaming = true;
      const r = await pool.run(job);
      maxGrowth = Math.max(maxGrowth, r.rssGrowth);
      const key = `${variant.family}\t${variant.cls}`;
      const t = tally.get(key) ?? { ok: 0, refused: 0, bug: 0 };
      t[r.outcome]++;
      tally.set(key, t);
      if (verbose) process.stdout.write(`${r.outcome} ${variant.family}: ${variant.label}: ${r.detail.slice(0, 200)}\n`);
      if (r.outcome === 'bug') { bugs.push(`${variant.family}: ${variant.label}: ${r.detail}`); process.stdout.write(`BUG ${variant.family}: ${variant.label}: ${r.detail}\n`); }
      if (i % 100 === 99) process.stderr.write(`fuzz-readers: ${i + 1}/${variants.length}, ${bugs.length} bugs, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    }
    pool.close();
    process.stdout.write(`\nfamily\tclass\tok\trefused\tbug\n`);
    for (const [k, t] of [...tally].sort()) process.stdout.write(`${k}\t${t.ok}\t${t.refused}\t${t.bug}\n`);
    const sum = [...tally.values()].reduce((a, t) => ({ ok: a.ok + t.ok, refused: a.refused + t.refused, bug: a.bug + t.bug }), { ok: 0, refused: 0, bug: 0 });
    process.stdout.write(`total\t\t${sum.ok}\t${sum.refused}\t${sum.bug}\n${variants.length} variants in ${((Date.now() - t0) / 1000).toFixed(0)} s; largest peak-RSS growth of one variant ${(maxGrowth / 2 ** 20).toFixed(0)} MiB\n`);
    process.exitCode = bugs.length ? 1 : 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// run only when started as a script (scripts/fuzz-commands.ts imports the mutators)
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--worker')) await worker();
  else await main();
}
