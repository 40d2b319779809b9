/**
 * A deterministic mutation fuzz of mka's readers of user input. Each format starts from a small valid
 * file (the demo model, stories260K, a quantized demo, MMLU and task data, a merge.json, result files,
 * queue job data) and is truncated at its structural boundaries and at random points, has header bytes
 * flipped, counts and lengths set to 0, huge and negative, types and dtypes swapped, shapes made to
 * contradict the config, and JSON values made deep, huge, of the wrong type or quoting a newline. Every
 * variant must either load, or be refused with a UserError of one short line naming the file (or the
 * model directory) — never another exception, a stack, a hang or an allocation sized by a corrupt
 * count (2^31 layers, a 2^60 length: refused by arithmetic before a table or buffer is sized by it,
 * which would otherwise fail with V8's 'Map maximum size exceeded' or an out-of-memory after minutes). Through the CLI, the same inputs exit 1 with one stderr line,
 * leave tfjs' tensor count where it was and no output directory or temporary behind. `mka serve`
 * answers a valid request after malformed, huge and concurrent ones.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { expectedTensors, readConfig } from '../src/model/config.ts';
import { openModelDir } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { UserError } from '../src/runtime/errors.ts';
import { readLlama2cCheckpoint } from '../src/convert/llama2c.ts';
import { readLlama2cTokenizer } from '../src/tokenizer/llama2c-tokenizer.ts';
import { readPlanFile } from '../src/compress/plan-file.ts';
import { readMmluFile } from '../src/eval/mmlu/data.ts';
import { readJsonDocs } from '../src/eval/tasks/data.ts';
import { checkJob } from '../src/queue/payload.ts';
import { hubEndpoint } from '../src/hub/cache.ts';
import { openPplResults } from '../src/eval/ppl/results.ts';
import { openResultsDir } from '../src/eval/mmlu/results.ts';
import { readPlan } from '../src/sweep/calibrate.ts';
import { readAnalysis } from '../src/sweep/analysis-file.ts';
import { planFile } from '../src/sweep/points.ts';
import { startServe } from '../src/serve/server.ts';
import { exportTfjs } from '../src/export/graph-model.ts';
import { tf } from '../src/runtime/tf.ts';
import { exportGguf } from '../src/export/gguf.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { meta, writeGguf } from '../src/gguf/writer.ts';
import { type GgufValue, ValueType } from '../src/gguf/format.ts';
import { assertUserError, leftovers, runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';
import { startFakeHub } from './hub-server.ts';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { resolveTextDataset } from '../src/hub/text.ts';
import { SHARED } from './helpers.ts';

const root = scratchDir('fuzz');
after(() => rmSync(root, { recursive: true, force: true }));

/** A fixed-seed generator (the same variants on every run). */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return Math.floor((s / 2 ** 32) * n);
  };
}

/** Tallies what a reader did with each variant; anything but loading or a proper UserError is a defect. */
class Outcomes {
  ok = 0;
  refused = 0;
  readonly defects: string[] = [];

  /** Runs `read` on one variant; `names` are the paths a message may begin with (the file, its model directory). */
  async run(label: string, names: string[], read: () => unknown): Promise<void> {
    try {
      await read();
      this.ok++;
    } catch (e) {
      const m = e instanceof Error ? e.message : String(e);
      const defect = !(e instanceof UserError) ? `${(e as Error)?.name ?? typeof e}: ${(e as Error)?.stack?.split('\n').slice(0, 3).join(' | ') ?? e}`
        : /[\n\r]/.test(m) ? `more than one line: ${JSON.stringify(m.slice(0, 300))}`
          : m.length > 1000 ? `a message of ${m.length} characters`
            : !names.some((n) => m.startsWith(n)) ? `does not begin with the file: ${m}`
              : null;
      if (defect) this.defects.push(`${label}: ${defect}`);
      else this.refused++;
    }
  }

  /** Asserts no defect, and that at least `minRefused` variants were refused (the fuzz reached the checks). */
  check(minRefused: number): void {
    assert.deepEqual(this.defects, [], this.defects.slice(0, 20).join('\n'));
    assert.ok(this.refused >= minRefused, `only ${this.refused} variants refused (${this.ok} loaded)`);
  }
}

/**
 * Everything a command reads of a model directory or GGUF file: config, checkpoint (checked against it),
 * every tensor (unless `tensors` is false), the tokenizer.
 */
async function loadAll(dir: string, tensors = true): Promise<void> {
  readConfig(dir);
  const { config, ckpt } = openModelDir(dir);
  try {
    for (const name of tensors ? ckpt.names() : []) if (!/\.(qweight|scales|mins)$/.test(name)) ckpt.read(name);
    for (const name of tensors ? expectedTensors(config).keys() : []) {
      if (!ckpt.packedInfo(name)) continue;
      ckpt.readPacked(name);
      ckpt.read(name); // dequantized
    }
  } finally {
    ckpt.close();
  }
  const tok = await loadTokenizer(dir);
  tok.decode(tok.encode('Question: What is 7 + 5?\nAnswer: A'));
}

/** Safetensors bytes: the u64 header length, the header, the data region. */
/** A GGUF file's metadata (less general.alignment, which the writer sets), tensor infos and tensor bytes, to write variants of it with writeGguf. */
function ggufParts(file: string): { entries: [string, GgufValue][]; tensors: { name: string; dims: number[]; type: number }[]; data: Map<string, Uint8Array> } {
  const g = new GgufFile(file);
  try {
    const entries = [...g.metadata.entries()].filter(([k]) => k !== 'general.alignment');
    const tensors = [...g.tensors.values()].map((t) => ({ name: t.name, dims: t.dims, type: t.type }));
    return { entries, tensors, data: new Map(tensors.map((t) => [t.name, g.readTensor(t.name)])) };
  } finally {
    g.close();
  }
}

function splitSafetensors(b: Buffer): { header: Record<string, any>; data: Buffer } {
  const n = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')), data: b.subarray(8 + n) };
}

function joinSafetensors(headerText: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.from(headerText, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** Nesting deep enough to overflow any recursive walk (JSON.stringify, String of an array): written into files as text, never walked here. */
const DEEP_TEXT = '['.repeat(20_000) + ']'.repeat(20_000);
/** Stands for DEEP_TEXT in values until `json` writes them. */
const DEEP = '\u0000deep';
/** JSON text of `v`, with DEEP_TEXT where DEEP stands. */
function json(v: unknown): string {
  return JSON.stringify(v).replaceAll(JSON.stringify(DEEP), DEEP_TEXT);
}
/** A short label for a value. */
function show(v: unknown): string {
  return v === DEEP ? 'deep' : typeof v === 'string' && v.length > 20 ? `"${v.slice(0, 8)}..." (${v.length})` : JSON.stringify(v);
}
/** Values every JSON field is tried with: zero, negative, fractional, huge, of other types, deep, long, with a newline. */
const ODD_VALUES: unknown[] = [0, -1, 1.5, 2 ** 31, 2 ** 60, 1e308, -1e308, '', 'x\ny', 'x'.repeat(100_000), null, true, [], {}, [1, 'a'], DEEP];
/** JSON texts that are not what any reader wants. */
const ODD_TEXTS: [string, string | Buffer][] = [
  ['empty', ''], ['newline in a syntax error', '{\n"a": x\n}'], ['truncated', '{"a": [1, 2'], ['NaN', '{"a": NaN}'], ['Infinity', '{"a": Infinity}'],
  ['1e999', '{"a": 1e999}'], ['array', '[1, 2]'], ['null', 'null'], ['string', '"s"'], ['deep', '['.repeat(200_000) + ']'.repeat(200_000)],
  ['deep object', '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000)], ['carriage returns', '{\r"a": x\r}'], ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])], ['BOM', '\ufeff{}'],
];

const M = join(root, 'model');
cpSync('models/demo', M, { recursive: true });

test('safetensors: truncations, header lengths, flipped header bytes, wrong dtypes, offsets and shapes, odd headers', async () => {
  const file = join(M, 'model.safetensors');
  const good = readFileSync(file);
  const { header, data } = splitSafetensors(good);
  const hlen = Number(good.readBigUInt64LE(0));
  const rnd = rng(1);
  const o = new Outcomes();
  const names = [file, M];
  const tryBytes = async (label: string, b: Buffer) => {
    writeFileSync(file, b);
    await o.run(label, names, () => loadAll(M));
  };
  try {
    for (const at of [0, 4, 7, 8, 9, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1, good.length - 1, ...Array.from({ length: 12 }, () => rnd(good.length))]) {
      await tryBytes(`truncated at ${at}`, good.subarray(0, at));
    }
    for (const n of [0n, 1n, 2n, BigInt(hlen - 1), BigInt(hlen + 1), 2n ** 32n, 2n ** 60n, 2n ** 63n, 2n ** 64n - 1n]) {
      const b = Buffer.from(good);
      b.writeBigUInt64LE(n, 0);
      await tryBytes(`header length ${n}`, b);
    }
    for (let i = 0; i < 60; i++) {
      const b = Buffer.from(good);
      b[8 + rnd(hlen)] ^= 1 << rnd(8);
      await tryBytes(`header bit flip ${i}`, b);
    }
    const tensors = Object.keys(header).filter((k) => k !== '__metadata__');
    const edits: [string, (t: any) => void][] = [
      ['dtype I32', (t) => { t.dtype = 'I32'; }], ['dtype F64', (t) => { t.dtype = 'F64'; }], ['dtype I8', (t) => { t.dtype = 'I8'; }],
      ['dtype F16', (t) => { t.dtype = 'F16'; }], ['dtype 3', (t) => { t.dtype = 3; }], ['dtype deep', (t) => { t.dtype = DEEP; }],
      ['shape negative', (t) => { t.shape[0] = -t.shape[0]; }], ['shape 2^60', (t) => { t.shape = [2 ** 60, 2 ** 60]; }], ['shape 1.5', (t) => { t.shape = [1.5]; }],
      ['shape transposed', (t) => { t.shape.reverse(); }], ['shape flat', (t) => { t.shape = [t.shape.reduce((a: number, b: number) => a * b, 1)]; }],
      ['shape 3-d', (t) => { t.shape.unshift(1); }], ['shape scalar', (t) => { t.shape = []; }], ['shape deep', (t) => { t.shape = DEEP; }],
      ['offsets negative', (t) => { t.data_offsets[0] = -4; }], ['offsets 2^62', (t) => { t.data_offsets = [2 ** 62, 2 ** 62 + 4]; }],
      ['offsets reversed', (t) => { t.data_offsets.reverse(); }], ['offsets shifted', (t) => { t.data_offsets = t.data_offsets.map((x: number) => x + 4); }],
      ['offsets three', (t) => { t.data_offsets.push(0); }],
    ];
    for (const [label, edit] of edits) {
      for (const name of [tensors[0], tensors[rnd(tensors.length)], tensors[tensors.length - 1]]) {
        const h = structuredClone(header);
        edit(h[name]);
        await tryBytes(`${label} of ${name}`, joinSafetensors(json(h), data));
      }
    }
    const renamed = (from: string, to: string) => JSON.stringify(Object.fromEntries(Object.entries(header).map(([k, v]) => [k === from ? to : k, v])));
    await tryBytes('a tensor renamed with a newline', joinSafetensors(renamed(tensors[3], `${tensors[3]}\nx`), data));
    await tryBytes('a tensor missing', joinSafetensors(renamed(tensors[3], 'unrelated'), data));
    for (const [label, entry] of [['unknown dtype', { dtype: 'Q9', shape: [1], data_offsets: [0, 4] }], ['wrong size', { dtype: 'F32', shape: [2], data_offsets: [0, 4] }], ['not an object', 7]] as const) {
      await tryBytes(`a tensor named with a newline, ${label}`, joinSafetensors(JSON.stringify({ ...header, [`x\ny${'z'.repeat(100_000)}`]: entry }), data));
    }
    await tryBytes('metadata not strings', joinSafetensors(json({ ...header, __metadata__: { a: DEEP } }), data));
    for (const [label, text] of ODD_TEXTS) await tryBytes(`header ${label}`, joinSafetensors(text.toString()));
  } finally {
    writeFileSync(file, good);
  }
  await loadAll(M);
  o.check(150);
});

test('config.json, tokenizer.json, tokenizer_config.json, generation_config.json: every field with odd values, odd texts', async () => {
  const o = new Outcomes();
  const rnd = rng(2);
  const loadTokens = async (dir: string) => {
    const tok = await loadTokenizer(dir);
    tok.decode(tok.encode('Question: What is 7 + 5?\nAnswer: A'));
  };
  for (const name of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    const file = join(M, name);
    const load = name === 'config.json' ? loadAll : loadTokens;
    const had = existsSync(file);
    const text = had ? readFileSync(file, 'utf8') : '{"bos_token_id": 1, "eos_token_id": 2}';
    const good = JSON.parse(text) as Record<string, unknown>;
    const keys = Object.keys(good).concat(name === 'config.json' ? ['head_dim', 'rope_scaling', 'quantization_config', 'sliding_window'] : []);
    try {
      for (const k of keys) {
        // the tokenizer's own tables: a few values each (each load builds a tokenizer)
        const values = name === 'tokenizer.json' ? [null, 1, 'x', [], DEEP] : ODD_VALUES;
        for (const v of values) {
          writeFileSync(file, json({ ...good, [k]: v }));
          await o.run(`${name} ${k}=${show(v)}`, [file, M], () => load(M));
        }
      }
      if (name === 'config.json') {
        for (const [k, v] of [['rope_scaling', { rope_type: 'llama3', factor: 8, low_freq_factor: 0, high_freq_factor: 4, original_max_position_embeddings: 0 }], ['rope_scaling', { type: 'x\ny' }], ['quantization_config', { quant_method: 'mka', bits: DEEP }]] as const) {
          writeFileSync(file, json({ ...good, [k]: v }));
          await o.run(`${name} ${k}=${show(v)}`, [file, M], () => load(M));
        }
      }
      for (const [label, t] of ODD_TEXTS) {
        writeFileSync(file, t);
        await o.run(`${name}: ${label}`, [file, M], () => load(M));
      }
      for (let i = 0; i < 6; i++) {
        writeFileSync(file, text.slice(0, rnd(text.length)));
        await o.run(`${name} truncated ${i}`, [file, M], () => load(M));
      }
    } finally {
      if (had) writeFileSync(file, text);
      else rmSync(file);
    }
  }
  await loadAll(M);
  o.check(250);
});

test('tokenizer_config.json and generation_config.json: a field of a type transformers does not take is refused naming the file and field; null reads as transformers reads it', async () => {
  const dir = join(root, 'tokconfig');
  cpSync(M, dir, { recursive: true });
  const file = join(dir, 'tokenizer_config.json');
  const good = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const encode = async (patch: Record<string, unknown>) => {
    writeFileSync(file, JSON.stringify({ ...good, ...patch }));
    return (await loadTokenizer(dir)).encode('hello world');
  };
  try {
    // wrong types, each of which transformers 4.57 refuses or reads by Python truthiness ("false" is true)
    const refused: [string, unknown][] = [
      ['bos_token', 5], ['bos_token', { content: 5 }], ['eos_token', true], ['unk_token', [1]], ['pad_token', 5],
      ['add_bos_token', 'yes'], ['add_bos_token', 'false'], ['add_bos_token', 0], ['add_eos_token', 1],
      ['chat_template', 3], ['chat_template', ['x']], ['model_max_length', 'big'], ['model_max_length', '512'],
      ['clean_up_tokenization_spaces', 'yes'], ['tokenizer_class', 5], ['additional_special_tokens', 'x'],
    ];
    for (const [field, value] of refused) {
      await assert.rejects(encode({ [field]: value }), (e: Error) => e instanceof UserError && !/\n/.test(e.message)
        && e.message.startsWith(`${file}: "${field}" is `) && /must be .*; fix the field/.test(e.message), `${field}=${JSON.stringify(value)}`);
    }
    // a BOS the vocabulary lacks (transformers gives it an id past the embeddings), or none where the Llama class adds one
    await assert.rejects(encode({ bos_token: '<nonexistent>' }), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: "bos_token" "<nonexistent>" is not a token of`));
    // a long one is cut whole escapes at a time, its quote closed (JSON.stringify(...).slice(0, 80) cut a \" in half)
    await assert.rejects(encode({ bos_token: '"'.repeat(100) }), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: "bos_token" "${'\\"'.repeat(77)}..." is not a token of`));
    await assert.rejects(encode({ tokenizer_class: null, bos_token: null }), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: "add_bos_token" is true but there is no BOS token`));
    // what transformers 4.57.6 gives for "hello world" with the demo tokenizer (AutoTokenizer; a null class: config.json's llama)
    const withBos = [1, 210, 73, 295, 225, 282, 80, 72], noBos = withBos.slice(1);
    assert.deepEqual(await encode({}), withBos);
    assert.deepEqual(await encode({ tokenizer_class: null }), withBos);
    assert.deepEqual(await encode({ tokenizer_class: null, add_bos_token: null }), noBos); // None is false to the Llama class
    assert.deepEqual(await encode({ tokenizer_class: 'LlamaTokenizerFast', add_bos_token: null }), noBos);
    assert.deepEqual(await encode({ add_bos_token: null }), withBos); // PreTrainedTokenizerFast keeps its post-processor
    assert.deepEqual(await encode({ model_max_length: 1e30, chat_template: [{ name: 'default', template: 'x' }], eos_token: { content: '</s>' } }), withBos);
    // generation_config.json's eos_token_id: dropped when not a token id, so generation did not stop there
    const genFile = join(dir, 'generation_config.json');
    for (const v of ['2', [2, '3'], 2.5, -1, true]) {
      writeFileSync(genFile, JSON.stringify({ eos_token_id: v }));
      await assert.rejects(loadTokenizer(dir), (e: Error) => e instanceof UserError && e.message.startsWith(`${genFile}: "eos_token_id" is `), JSON.stringify(v));
    }
    for (const v of [2, [2, 3], null]) {
      writeFileSync(genFile, JSON.stringify({ eos_token_id: v }));
      assert.deepEqual((await loadTokenizer(dir)).eos.sort(), [...new Set([2, ...[v ?? []].flat()])].sort(), JSON.stringify(v));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('llama2.c checkpoint and tokenizer.bin: truncations, every header field at odd values, flipped bytes', { skip: SHARED ? false : 'MKA_SHARED is not set' }, async () => {
  const o = new Outcomes();
  const rnd = rng(3);
  const bin = readFileSync(join(SHARED!, 'models/stories260K/stories260K.bin'));
  const file = join(root, 'stories.bin');
  const readAll = () => {
    const c = readLlama2cCheckpoint(file);
    for (const name of c.tensors.keys()) c.read(name);
  };
  const v1 = bin.readUInt32LE(0) === 0x616b3432;
  for (const at of [0, 3, 27, 28, 29, 255, 256, 257, bin.length - 4, bin.length - 1, ...Array.from({ length: 6 }, () => rnd(bin.length))]) {
    writeFileSync(file, bin.subarray(0, at));
    await o.run(`checkpoint truncated at ${at}`, [file], readAll);
  }
  for (let field = 0; field < 7; field++) {
    for (const v of [0, -1, 1, 3, 1000, 2 ** 31 - 1, -(2 ** 31)]) {
      const b = Buffer.from(bin);
      b.writeInt32LE(v, (v1 ? 8 : 0) + 4 * field);
      writeFileSync(file, b);
      await o.run(`checkpoint header field ${field} = ${v}`, [file], readAll);
    }
  }
  const tb = readFileSync(join(SHARED!, 'models/stories260K/tok512.bin'));
  const tfile = join(root, 'tok.bin');
  const tokens = (b: Buffer) => {
    writeFileSync(tfile, b);
    return o.run('tokenizer.bin', [tfile], () => readLlama2cTokenizer(tfile));
  };
  for (const at of [0, 3, 4, 5, 11, 12, 13, tb.length - 1, ...Array.from({ length: 6 }, () => rnd(tb.length))]) await tokens(tb.subarray(0, at));
  for (const v of [0, -1, 2 ** 31 - 1]) {
    const b = Buffer.from(tb);
    b.writeInt32LE(v, 0);
    await tokens(b);
  }
  for (let i = 0; i < 60; i++) {
    const b = Buffer.from(tb);
    b[rnd(b.length)] ^= 1 << rnd(8);
    if (i % 3 === 0) b.writeInt32LE([-1, 2 ** 31 - 1, 0][i % 9 / 3], 4 + 4 + rnd(100) * 4); // a length field, roughly
    await tokens(b);
  }
  o.check(70);
});

test('a quantized model directory: packed tensors of wrong dtypes and shapes, quantization_config of odd values', async () => {
  const Q = join(root, 'quantized');
  const r = await runCliInProcess(['quantize', '--model', M, '--method', 'rtn', '--out', Q, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  await loadAll(Q);
  const o = new Outcomes();
  const file = join(Q, 'model.safetensors');
  const good = readFileSync(file);
  const { header, data } = splitSafetensors(good);
  const cfgFile = join(Q, 'config.json');
  const cfgText = readFileSync(cfgFile, 'utf8');
  const cfg = JSON.parse(cfgText);
  try {
    const packed = Object.keys(header).filter((k) => /\.(qweight|scales|mins)$/.test(k));
    assert.ok(packed.length > 10, 'the quantized model holds packed tensors');
    const edits: [string, (t: any) => void][] = [
      ['dtype F32', (t) => { t.dtype = 'F32'; t.shape = [t.shape[0], t.shape[1] / 4]; }], ['dtype U8', (t) => { t.dtype = 'U8'; }], ['dtype I8', (t) => { t.dtype = 'I8'; }],
      ['dtype BF16', (t) => { t.dtype = 'BF16'; }], ['rows halved', (t) => { t.shape = [t.shape[0] / 2, t.shape[1] * 2]; }], ['columns halved', (t) => { t.shape = [t.shape[0] * 2, t.shape[1] / 2]; }],
      ['1-d', (t) => { t.shape = [t.shape[0] * t.shape[1]]; }], ['columns 3', (t) => { t.shape = [t.shape[0] * t.shape[1] / 3, 3]; }],
    ];
    const rnd = rng(4);
    for (const [label, edit] of edits) {
      for (const name of [packed[0], packed[1], packed[rnd(packed.length)], packed[packed.length - 1]]) {
        const h = structuredClone(header);
        edit(h[name]);
        writeFileSync(file, joinSafetensors(JSON.stringify(h), data));
        await o.run(`${label} of ${name}`, [file, Q], () => loadAll(Q));
      }
    }
    for (const name of [packed[0], packed[1], packed[packed.length - 1]]) {
      writeFileSync(file, joinSafetensors(JSON.stringify({ ...header, [name.replace(/\.(qweight|scales|mins)$/, '.mins')]: header[name] }), data));
      await o.run(`a stray mins beside ${name}`, [file, Q], () => loadAll(Q));
      const { [name]: _, ...rest } = header;
      writeFileSync(file, joinSafetensors(JSON.stringify(rest), data));
      await o.run(`${name} missing`, [file, Q], () => loadAll(Q));
    }
    writeFileSync(file, good);
    for (const k of ['bits', 'group_size', 'sym', 'act_bits', 'quant_method', 'tables']) {
      for (const v of ODD_VALUES) {
        writeFileSync(cfgFile, json({ ...cfg, quantization_config: { ...cfg.quantization_config, [k]: v } }));
        await o.run(`quantization_config.${k}=${show(v)}`, [cfgFile, Q], () => loadAll(Q));
      }
    }
    for (const v of ODD_VALUES) {
      writeFileSync(cfgFile, json({ ...cfg, quantization_config: v }));
      await o.run(`quantization_config=${show(v)}`, [cfgFile, Q], () => loadAll(Q));
    }
  } finally {
    writeFileSync(file, good);
    writeFileSync(cfgFile, cfgText);
  }
  o.check(60);
});

test('GGUF metadata: every key dropped, of another type, at odd numbers; odd strings, arrays cut short, bad token types and scores', async () => {
  const src = join(root, 'demo.gguf');
  await exportGguf({ model: M, out: src, type: 'q8_0', quiet: true });
  const { entries, tensors, data } = ggufParts(src);
  const file = join(root, 'variant.gguf');
  const o = new Outcomes();
  const tryMeta = async (label: string, m: [string, GgufValue][], ts = tensors) => {
    await writeGguf(file, m, ts, (n) => data.get(n.replace(/\n/g, '')) ?? data.get(ts[0].name)!);
    await o.run(label, [file], () => loadAll(file, false));
  };
  const typed = (type: ValueType, values: ArrayLike<number>): GgufValue => ({ type: ValueType.ARRAY, array: { type, values } } as GgufValue);
  for (const [i, [k, v]] of entries.entries()) {
    const put = (nv: GgufValue) => entries.map(([kk, vv], j): [string, GgufValue] => [kk, j === i ? nv : vv]);
    await tryMeta(`${k} dropped`, entries.filter((_, j) => j !== i));
    if (v.type === ValueType.ARRAY) {
      const n = v.array.values.length;
      if (v.array.type === ValueType.STRING) {
        const values = v.array.values as string[];
        await tryMeta(`${k} cut short`, put(meta.strings(values.slice(0, n >> 1))));
        await tryMeta(`${k} with empty and multi-line strings`, put(meta.strings(values.map((x, j) => (j % 7 === 3 ? '' : j % 11 === 5 ? 'x\ny' : x)))));
      } else {
        await tryMeta(`${k} cut short`, put(typed(v.array.type, (v.array.values as Int32Array).slice(0, n >> 1))));
        for (const x of [NaN, Infinity]) await tryMeta(`${k} all ${x}`, put(typed(ValueType.FLOAT32, new Float32Array(n).fill(x))));
        for (const x of [-5, 2 ** 31 - 1]) await tryMeta(`${k} all ${x}`, put(typed(ValueType.INT32, new Int32Array(n).fill(x))));
      }
      await tryMeta(`${k} a number`, put(meta.u32(5)));
    } else if (v.type === ValueType.STRING) {
      for (const x of ['', 'x\ny', 'x'.repeat(100_000)]) await tryMeta(`${k}=${show(x)}`, put(meta.str(x)));
      await tryMeta(`${k} a number`, put(meta.u32(5)));
    } else {
      for (const x of [0, 3, 2 ** 32 - 1]) await tryMeta(`${k}=u32 ${x}`, put(meta.u32(x)));
      await tryMeta(`${k}=i32 -1`, put(meta.i32(-1)));
      for (const x of [NaN, 1e30]) await tryMeta(`${k}=f32 ${x}`, put(meta.f32(x)));
      await tryMeta(`${k} a string`, put(meta.str('x')));
    }
  }
  await tryMeta('a key with a newline', [...entries, ['mka.x\ny', meta.u32(1)]]);
  await tryMeta('a key of 100,000 bytes', [...entries, ['k'.repeat(100_000), meta.u32(1)]]);
  await tryMeta('a tensor name with a newline', entries, tensors.map((t, i) => (i === 3 ? { ...t, name: `${t.name}\n` } : t)));
  // a vocabulary with more tokens than the embedding has rows: refused when a text encodes to one
  const tokens = entries.find(([k]) => k === 'tokenizer.ggml.tokens')![1] as { array: { values: string[] } };
  const grow = (k: string, v: GgufValue): GgufValue => {
    if (v.type !== ValueType.ARRAY) return v;
    if (k === 'tokenizer.ggml.tokens') return meta.strings([...tokens.array.values, '<extra>']);
    if (k === 'tokenizer.ggml.scores') return typed(ValueType.FLOAT32, [...(v.array.values as Float32Array), 0]);
    if (k === 'tokenizer.ggml.token_type') return typed(ValueType.INT32, [...(v.array.values as Int32Array), 3]);
    return v;
  };
  await writeGguf(file, entries.map(([k, v]): [string, GgufValue] => [k, grow(k, v)]), tensors, (n) => data.get(n)!);
  await loadAll(file);
  const tok = await loadTokenizer(file);
  const loaded = o.ok;
  await o.run('a token beyond the embedding', [file], () => tok.encode('a <extra> b'));
  assert.equal(o.ok, loaded, 'a text holding a token beyond the embedding is refused');
  o.check(120);
});

test('export gguf reads tokenizer.json itself: corrupt tables are refused, a vocabulary smaller than vocab_size is padded', async () => {
  const T = join(root, 'gguf-tokenizer');
  cpSync(M, T, { recursive: true });
  const file = join(T, 'tokenizer.json');
  const tok = JSON.parse(readFileSync(file, 'utf8'));
  const out = join(root, 'tokenizer.gguf');
  const o = new Outcomes();
  const tryTokenizer = async (label: string, t: unknown) => {
    writeFileSync(file, json(t));
    await o.run(label, [file], () => exportGguf({ model: T, out, type: 'f32', quiet: true }));
  };
  for (const v of [null, 'x', [1, 'a'], DEEP, { a: -1 }, { a: 1.5 }, { a: 'x' }, { a: 1, b: 1 }]) await tryTokenizer(`model.vocab=${show(v)}`, { ...tok, model: { ...tok.model, vocab: v } });
  for (const v of ['x\ny', DEEP, 5, null]) await tryTokenizer(`model.type=${show(v)}`, { ...tok, model: { ...tok.model, type: v } });
  for (const v of [5, 'x', [null], [1], [{ id: 'x', content: 'a' }], [{ id: -1, content: 'a' }], [{ id: 3, content: 7 }], [{ id: 2 ** 60, content: 'a' }], DEEP]) await tryTokenizer(`added_tokens=${show(v)}`, { ...tok, added_tokens: v });
  for (const v of [null, [['a']], ['nospace'], [[1, 2]], DEEP]) await tryTokenizer(`model.merges=${show(v)}`, { ...tok, model: { ...tok.model, merges: v } });
  assert.equal(o.ok, 0, 'every corrupt table is refused');
  o.check(25);
  assert.ok(!existsSync(out), 'no GGUF written');
  // a chat template that is neither text nor named templates is refused, not left out of the GGUF
  writeFileSync(file, JSON.stringify(tok));
  const cfgFile = join(T, 'tokenizer_config.json'), cfg = readFileSync(cfgFile, 'utf8');
  writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(cfg), chat_template: 3 }));
  await assert.rejects(exportGguf({ model: T, out, type: 'f32', quiet: true }), (e: Error) => e instanceof UserError && e.message.startsWith(`${cfgFile}: "chat_template" is 3`));
  writeFileSync(cfgFile, cfg);
  assert.ok(!existsSync(out), 'no GGUF written');
  // the model's embedding has more rows than the tokenizer has tokens (vocabularies padded for speed): the ids past the last become [PADn]
  const last = Object.entries(tok.model.vocab as Record<string, number>).sort((a, b) => b[1] - a[1])[0];
  const { [last[0]]: _, ...vocab } = tok.model.vocab;
  writeFileSync(file, JSON.stringify({ ...tok, model: { ...tok.model, vocab, merges: tok.model.merges.filter((m: string[]) => m.join('') !== last[0]) } }));
  await exportGguf({ model: T, out, type: 'f32', quiet: true });
  const g = new GgufFile(out);
  try {
    assert.equal((g.array('tokenizer.ggml.tokens')!.values as string[])[last[1]], `[PAD${last[1]}]`);
  } finally {
    g.close();
  }
  await loadAll(out, false);
});

test('merge.json plans: every field with odd values, odd texts', async () => {
  const o = new Outcomes();
  const plan = {
    method: 'mka', original_layers: 8, layers: 7, blend_norms: false, dtype: 'float32',
    steps: [{ action: 'merge', layers: [6, 7], originalLayers: [6, 7], lambda: 0.5 }],
    layer_sources: [...[0, 1, 2, 3, 4, 5].map((l) => ({ sources: [{ layer: l, weight: 1 }], norms_from: l })), { sources: [{ layer: 6, weight: 0.5 }, { layer: 7, weight: 0.5 }], norms_from: 6 }],
  };
  const file = join(root, 'merge.json');
  writeFileSync(file, JSON.stringify(plan));
  readPlanFile(file, M);
  const at = (path: (string | number)[], v: unknown) => {
    const p: any = structuredClone(plan);
    let x = p;
    for (const k of path.slice(0, -1)) x = x[k];
    x[path[path.length - 1]] = v;
    return p;
  };
  const paths: (string | number)[][] = [['method'], ['original_layers'], ['layers'], ['blend_norms'], ['dtype'], ['steps'], ['steps', 0], ['steps', 0, 'layers'], ['steps', 0, 'originalLayers'],
    ['steps', 0, 'originalLayers', 0], ['steps', 0, 'lambda'], ['layer_sources'], ['layer_sources', 6], ['layer_sources', 6, 'sources'], ['layer_sources', 6, 'sources', 0, 'layer'],
    ['layer_sources', 6, 'sources', 0, 'weight'], ['layer_sources', 6, 'norms_from'], ['source_config_sha256']];
  for (const p of paths) {
    for (const v of ODD_VALUES) {
      writeFileSync(file, json(at(p, v)));
      await o.run(`${p.join('.')}=${show(v)}`, [file], () => readPlanFile(file, M));
    }
  }
  for (const [label, t] of ODD_TEXTS) {
    writeFileSync(file, t);
    await o.run(label, [file], () => readPlanFile(file, M));
  }
  const yaml = join(root, 'merge.yaml');
  for (const t of ['a: [', 'a:\n  - b\n c', '- 1\n- 2', '&a [*a]', 'x: !!binary AAAA', '{'.repeat(10_000)]) {
    writeFileSync(yaml, t);
    await o.run(`yaml ${JSON.stringify(t.slice(0, 20))}`, [yaml], () => readPlanFile(yaml, M));
  }
  o.check(250);
});

test('MMLU CSV and task data files: truncations, quotes, field counts, odd JSON Lines', async () => {
  const o = new Outcomes();
  const rnd = rng(5);
  const csv = join(root, 'anatomy_test.csv');
  const good = 'What is 1+1?,1,2,3,4,B\n"A question, with a comma","x ""quoted""",b,c,d,A\nThird?,a,b,c,d,D\n';
  const variants = [
    '', '\n\n', '\ufeff', 'a,b', 'a,b,c,d,e,f,g\n', 'q,a,b,c,d,E\n', ',a,b,c,d,A\n', '"unclosed,a,b,c,d,A\n', '"q"x,a,b,c,d,A\n', 'q,a,b,c,d,' + 'A'.repeat(100_000) + '\n',
    'q\ny,a,b,c,d,A\n', 'q,a,b,c,d,"\nA"\n', '"'.repeat(100_001), ',,,,,\n'.repeat(1000), ...Array.from({ length: 20 }, () => good.slice(0, rnd(good.length))),
    ...Array.from({ length: 20 }, () => {
      const b = [...good];
      b[rnd(b.length)] = ['"', ',', '\n', '\r', 'X'][rnd(5)];
      return b.join('');
    }),
  ];
  for (const v of variants) {
    writeFileSync(csv, v);
    await o.run(`csv ${JSON.stringify(v.slice(0, 30))}`, [csv], () => readMmluFile(csv, 'anatomy', 'test'));
  }
  writeFileSync(csv, Buffer.from([0x71, 0x2c, 0xff, 0x2c, 0x62, 0x2c, 0x63, 0x2c, 0x64, 0x2c, 0x41, 0x0a]));
  await o.run('csv invalid UTF-8', [csv], () => readMmluFile(csv, 'anatomy', 'test'));
  const jsonl = join(root, 'docs.jsonl');
  for (const v of ['{"a":1}\n{"b":\n', '{"a":1}\n[1]\n', '{"a":1}\nnull\n', '{"a": x}\n', '{"a":1}\r\n{"b": y}\r\n', '['.repeat(200_000), '[{"a":1}, 2]', '[' + '{"a":1},'.repeat(10) + ']', `${'['.repeat(100_000)}\n`]) {
    writeFileSync(jsonl, v);
    await o.run(`jsonl ${JSON.stringify(v.slice(0, 30))}`, [jsonl], () => readJsonDocs(jsonl));
  }
  for (const [label, t] of ODD_TEXTS) {
    writeFileSync(jsonl, t);
    await o.run(`jsonl ${label}`, [jsonl], () => readJsonDocs(jsonl));
  }
  o.check(50);
});

test('resume state: stored windows and subjects that are not the run\'s, odd window files', async () => {
  const o = new Outcomes();
  const dir = join(root, 'ppl');
  const model = { dir: M, config: readConfig(M), compute: 'float32' } as unknown as Parameters<typeof openPplResults>[1];
  const results = openPplResults(dir, model, [1, 2, 3, 4, 5], { seqLen: 4 }, false);
  results.save(0, { begin: 0, end: 4, scored_from: 0, nll: 3, tokens: 3 });
  assert.deepEqual(results.load(0, { begin: 0, end: 4, scored_from: 0 }), { begin: 0, end: 4, scored_from: 0, nll: 3, tokens: 3 });
  const wfile = join(dir, 'windows', '0.json');
  const window = { begin: 0, end: 4, scored_from: 0, nll: 3, tokens: 3 };
  // another window's bounds, or counts it cannot hold: each refused
  for (const [k, v] of [['begin', 2], ['end', 6], ['scored_from', 2], ['tokens', 99], ['tokens', -1], ['nll', -5]] as [string, unknown][]) {
    writeFileSync(wfile, json({ ...window, [k]: v }));
    await o.run(`window ${k}=${show(v)}`, [wfile], () => results.load(0, { begin: 0, end: 4, scored_from: 0 }));
  }
  assert.equal(o.ok, 0, 'every window that is not window 0 is refused');
  for (const [k, v] of Object.keys(window).flatMap((k) => ODD_VALUES.map((v): [string, unknown] => [k, v]))) {
    writeFileSync(wfile, json({ ...window, [k]: v }));
    await o.run(`window ${k}=${show(v)}`, [wfile], () => results.load(0, { begin: 0, end: 4, scored_from: 0 }));
  }
  for (const [label, t] of ODD_TEXTS) {
    writeFileSync(wfile, t);
    await o.run(`window ${label}`, [wfile], () => results.load(0, { begin: 0, end: 4, scored_from: 0 }));
  }
  // a run key that is a FIFO or a directory: refused, never read (a FIFO would block the run forever)
  const beforeKeys = o.ok;
  for (const kind of ['fifo', 'dir']) {
    const d = join(root, `ppl-${kind}`);
    mkdirSync(d);
    if (kind === 'fifo') execFileSync('mkfifo', [join(d, 'run-key.json')]);
    else mkdirSync(join(d, 'run-key.json'));
    await o.run(`run key a ${kind}`, [join(d, 'run-key.json')], () => openPplResults(d, model, [1, 2, 3, 4, 5], { seqLen: 4 }, false));
  }
  assert.equal(o.ok, beforeKeys, 'a run key that is not a regular file is refused');
  const mdir = join(root, 'mmlu');
  const mkey = { version: 1, model: 'm' } as unknown as Parameters<typeof openResultsDir>[1];
  const mmlu = openResultsDir(mdir, mkey, false);
  const q = (index: number) => ({ subject: 'anatomy', index, answer: 'A', prediction: 'B', correct: false, answerLogits: [1, 2, 3, 4], ntrainKept: 0, truncated: false, cached: false, nll: 1, nllTokens: 1 });
  mmlu.save({ subject: 'anatomy', questions: [q(0), q(1), q(2)], data: 'fp' } as unknown as Parameters<typeof mmlu.save>[0]);
  assert.equal(mmlu.load('anatomy', 'fp', 3)?.questions.length, 3);
  const sfile = join(mdir, 'subjects', 'anatomy.json');
  const stored = JSON.parse(readFileSync(sfile, 'utf8'));
  const okBefore = o.ok;
  for (const questions of [[q(0), q(1)], [q(0), q(2), q(1)], [q(0), q(1), q(2), q(3)], [q(1), q(1), q(2)]]) {
    writeFileSync(sfile, JSON.stringify({ ...stored, questions }));
    await o.run(`subject questions ${questions.map((x) => x.index)}`, [sfile], () => mmlu.load('anatomy', 'fp', 3));
  }
  assert.equal(o.ok, okBefore, 'every changed question list is refused');
  // a sweep's stored plan of another model, or one taking layers the model does not have
  const sweepOut = join(root, 'sweep');
  const point = { method: 'mka', removed: 1 } as Parameters<typeof planFile>[1];
  const pfile = planFile(sweepOut, point);
  mkdirSync(dirname(pfile), { recursive: true });
  const mix = (l: number) => ({ sources: [{ layer: l, weight: 1 }], normsFrom: l });
  const plan = { method: 'mka', originalLayers: 8, layers: [0, 1, 2, 3, 4, 5, 6].map(mix), steps: [], blendNorms: false, details: {} };
  writeFileSync(pfile, JSON.stringify(plan));
  assert.equal(readPlan(sweepOut, point, 8)?.layers.length, 7);
  const okPlans = o.ok;
  for (const edit of [{ originalLayers: 12 }, { layers: [] }, { layers: [...plan.layers, mix(7), mix(7)] }, { layers: [mix(0), mix(99)] }, { layers: [mix(0), { ...mix(1), normsFrom: -1 }] },
    { layers: [mix(0), { sources: [{ layer: 1, weight: 0.5 }], normsFrom: 1 }] }, { layers: [mix(0), { sources: [], normsFrom: 1 }] },
    { layers: [mix(0), { sources: [{ layer: 1, weight: 0.5 }, { layer: 1, weight: 0.5 }], normsFrom: 1 }] }]) {
    writeFileSync(pfile, JSON.stringify({ ...plan, ...edit }));
    await o.run(`sweep plan ${JSON.stringify(edit).slice(0, 60)}`, [pfile], () => readPlan(sweepOut, point, 8));
  }
  assert.equal(o.ok, okPlans, 'every plan the model cannot take is refused');
  // its analysis.json, which plans points added later: a matrix or block influence of another size
  const square = (n: number) => Array.from({ length: n }, () => Array.from({ length: n }, () => 0.5));
  const afile = join(sweepOut, 'analysis.json');
  writeFileSync(afile, JSON.stringify({ metric: 'npib', samples: 10, npib: square(8), block_influence: new Array(8).fill(0.1) }));
  assert.equal(readAnalysis(sweepOut, 8)?.matrix?.length, 8);
  const okAnalyses = o.ok;
  for (const a of [{ npib: square(3) }, { npib: [...square(7), [1]] }, { block_influence: [0.1] }, { npib: square(9), block_influence: new Array(9).fill(0.1) }]) {
    writeFileSync(afile, JSON.stringify({ metric: 'npib', samples: 10, npib: square(8), block_influence: new Array(8).fill(0.1), ...a }));
    await o.run(`analysis ${Object.keys(a)}`, [afile], () => readAnalysis(sweepOut, 8));
  }
  assert.equal(o.ok, okAnalyses, 'every analysis of another size is refused');
  o.check(90);
});

test('queue job data: every field with odd values is refused with a UserError, never another exception', async () => {
  const o = new Outcomes();
  const job = { kind: 'point', point: { method: 'mka', removed: 1 }, sweep: { model: 'models/demo', data: 'data', out: 'out', remove: [1] } };
  const jobPaths: string[][] = [['kind'], ['point'], ['point', 'method'], ['point', 'removed'], ['point', 'quantize'], ['sweep'], ['sweep', 'model'], ['sweep', 'out'], ['sweep', 'remove'],
    ['sweep', 'taskData'], ['sweep', 'ppl'], ['sweep', 'params'], ['subject'], ['task'], ['index']];
  for (const kind of ['point', 'subject', 'shard', 'calibration']) {
    for (const p of jobPaths) {
      for (const v of ODD_VALUES) {
        const j: any = structuredClone({ ...job, kind });
        let x = j;
        for (const k of p.slice(0, -1)) x = x[k];
        x[p[p.length - 1]] = v === DEEP ? JSON.parse(DEEP_TEXT) : v;
        await o.run(`${kind} ${p.join('.')}=${show(v)}`, ['job data refused'], () => checkJob(j, root));
      }
    }
  }
  for (const v of ODD_VALUES) await o.run(`job ${show(v)}`, ['job data refused'], () => checkJob(v === DEEP ? JSON.parse(DEEP_TEXT) : v, root));
  o.check(300);
});

test('hub: a malformed HF_ENDPOINT is refused naming it and the fix', async () => {
  const o = new Outcomes();
  for (const url of ['not a url', 'http://', 'ftp://example.org', 'http://[::1', 'javascript:alert(1)', '', 'https://hub.example/?x=1', 'x'.repeat(100_000)]) {
    await o.run(`HF_ENDPOINT ${JSON.stringify(url.slice(0, 30))}`, ['HF_ENDPOINT'], () => hubEndpoint({ HF_ENDPOINT: url }));
  }
  assert.equal(o.ok, 0);
  o.check(8);
  assert.equal(hubEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:8080/' }), 'http://127.0.0.1:8080');
  assert.equal(hubEndpoint({}), 'https://huggingface.co');
});

test('hub text datasets: a downloaded parquet file that is not parquet, or cut short, is one line naming it', async () => {
  const good = Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'text', data: ['one', 'two', 'three'], type: 'STRING' }] }));
  const variants = [Buffer.from('PAR1 not a parquet file PAR1'), good.subarray(0, good.length - 9), good.subarray(0, good.length >> 1), Buffer.alloc(0)];
  const hub = await startFakeHub(variants.map((bytes, i) => ({
    type: 'dataset' as const, name: `acme/broken${i}`, sha: String(i).repeat(40), lfs: () => true, files: { 'test-00000-of-00001.parquet': bytes },
  })));
  const o = new Outcomes();
  try {
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(root, 'hub-cache'), HF_TOKEN: '' };
    for (const i of variants.keys()) await o.run(`parquet variant ${i}`, [join(root, 'hub-cache')], () => resolveTextDataset(`acme/broken${i}`, { env, quiet: true }));
  } finally {
    await hub.close();
  }
  assert.equal(o.ok, 0);
  o.check(variants.length);
});

test('parquet: bad magic, truncations, huge lengths, flipped page headers and footers, run-length bombs and endless runs are one line naming the file', async () => {
  const { openParquetReader, ParquetError } = await import('../src/io/parquet.ts');
  const { readParquetDocs } = await import('../src/eval/tasks/data.ts');
  const dir = join(root, 'parquet');
  mkdirSync(dir, { recursive: true });
  const N = 40;
  const good = Buffer.from(parquetWriteBuffer({ columnData: [
    { name: 'text', data: Array.from({ length: N }, (_, i) => `row ${i}`), type: 'STRING' },
    { name: 'label', data: Array.from({ length: N }, (_, i) => i % 4), type: 'INT32' },
  ] }));
  // an uncompressed dictionary-coded column whose data page (6 bytes: bit width 1, two runs) is replaced by `page`
  const withPage = (page: number[]) => {
    let calls = 0;
    return Buffer.from(parquetWriteBuffer({
      codec: 'UNCOMPRESSED', compressors: { UNCOMPRESSED: (b: Uint8Array) => (++calls === 2 ? Uint8Array.from(page) : b) },
      columnData: [{ name: 'label', data: [...Array(64).fill(0), ...Array(8).fill(1)], type: 'INT32' }],
    } as Parameters<typeof parquetWriteBuffer>[0]));
  };
  const file = join(dir, 'x.parquet');
  const reader = openParquetReader({ deadlineMs: () => 3000 });
  const o = new Outcomes();
  try {
    const variants: [string, Buffer][] = [
      ['bad magic', Buffer.concat([Buffer.from('PAR2'), good.subarray(4)])], ['bad tail magic', Buffer.concat([good.subarray(0, -4), Buffer.from('PAR2')])],
      ['empty', Buffer.alloc(0)], ['magic only', Buffer.from('PAR1PAR1')],
      ['footer length 2^32-1', Buffer.concat([good.subarray(0, -8), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('PAR1')])],
    ];
    for (let i = 0; i < good.length; i += 13) variants.push([`cut at ${i}`, good.subarray(0, i)]);
    for (let i = 4; i < good.length - 8; i += 3) {
      for (const v of [0x00, 0xff, 0x80]) {
        const b = Buffer.from(good);
        b[i] = v;
        variants.push([`byte ${i}=${v}`, b]);
      }
    }
    for (const [label, bytes] of variants) {
      writeFileSync(file, bytes);
      await o.run(label, [file], async () => {
        try {
          await reader.read(file, 'parquet file');
        } catch (e) {
          // what readParquetDocs and the hub readers make of it
          if (e instanceof ParquetError && !/[\n\r]/.test(e.message)) throw new UserError(`${file}: not a readable parquet file (${e.message})`);
          throw e;
        }
      });
    }
    o.check(300);
    // a run of 2^30 values in 5 bytes: the decoder runs out of its heap (or time), the process goes on
    writeFileSync(file, withPage([0, 0x80, 0x80, 0x80, 0x80, 0x08]));
    await assert.rejects(reader.read(file, 'parquet file'), (e: Error) => e instanceof ParquetError && /need more than 512 MB|took longer than 3 s/.test(e.message));
    // a bit-packed run whose count overflows to a negative number never ends: the deadline stops it
    writeFileSync(file, withPage([0, 0x81, 0x80, 0x80, 0x80, 0x02]));
    await assert.rejects(reader.read(file, 'parquet file'), (e: Error) => e instanceof ParquetError && /took longer than 3 s/.test(e.message));
    writeFileSync(file, withPage([1, 0x80, 0x01, 0x00, 0x10, 0x01])); // what the writer wrote: 64 zeros, 8 ones
    assert.deepEqual((await reader.read(file, 'parquet file')).map((r) => r.label), [...Array(64).fill(0), ...Array(8).fill(1)]);
  } finally {
    await reader.close();
  }
  // through a command's reader: one line naming the file
  writeFileSync(file, withPage([0, 0x80, 0x80, 0x80, 0x80, 0x08]));
  await assert.rejects(readParquetDocs(file), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: not a readable parquet file (`) && !/\n/.test(e.message));
  writeFileSync(file, good);
  assert.equal((await readParquetDocs(file)).length, N);
  rmSync(dir, { recursive: true });
});

test('through the CLI: corrupt inputs exit 1 with one line, leave tfjs tensors and no output or temporaries behind', async () => {
  const bad = join(root, 'bad-model');
  cpSync(M, bad, { recursive: true });
  // a value that is not finite in the last tensor written: commands fail in the middle of their output
  const st = join(bad, 'model.safetensors');
  const b = readFileSync(st);
  const { header } = splitSafetensors(b);
  const last = Object.entries(header).filter(([k]) => k !== '__metadata__').sort((x: any, y: any) => y[1].data_offsets[0] - x[1].data_offsets[0])[0];
  b.writeFloatLE(Number.POSITIVE_INFINITY, 8 + Number(b.readBigUInt64LE(0)) + (last[1] as any).data_offsets[0] + 4);
  writeFileSync(st, b);
  // and one in a tensor in the middle: loading fails with half the weights read
  const corrupt = (dir: string, from: string, pick: (names: string[]) => string, value: number) => {
    cpSync(from, dir, { recursive: true });
    const f = join(dir, 'model.safetensors');
    const bytes = readFileSync(f);
    const h = splitSafetensors(bytes).header;
    const name = pick(Object.keys(h).filter((k) => k !== '__metadata__').sort((x, y) => h[x].data_offsets[0] - h[y].data_offsets[0]));
    const at = 8 + Number(bytes.readBigUInt64LE(0)) + h[name].data_offsets[0];
    if (h[name].dtype === 'F16') bytes.writeUInt16LE(0x7e00, at); // NaN
    else bytes.writeFloatLE(value, at);
    writeFileSync(f, bytes);
    return f;
  };
  const mid = join(root, 'bad-middle');
  const midFile = corrupt(mid, M, (names) => names[names.length >> 1], Number.NaN);
  const midPacked = join(root, 'bad-middle-packed');
  const midPackedFile = corrupt(midPacked, join(root, 'quantized'), (names) => names.filter((n) => n.endsWith('.scales'))[4], Number.NaN);
  const cfgBad = join(root, 'bad-config');
  cpSync(M, cfgBad, { recursive: true });
  writeFileSync(join(cfgBad, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(M, 'config.json'), 'utf8')), num_hidden_layers: 2 ** 31 }));
  const longContext = join(root, 'long-context');
  cpSync(M, longContext, { recursive: true });
  writeFileSync(join(longContext, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(M, 'config.json'), 'utf8')), max_position_embeddings: 2 ** 31 - 1 }));
  const tokBad = join(root, 'bad-tokenizer');
  cpSync(M, tokBad, { recursive: true });
  writeFileSync(join(tokBad, 'tokenizer.json'), '{\n"model": x\n}');
  // a tokenizer with a token the model has no embedding for
  const extra = join(root, 'extra-token');
  cpSync(M, extra, { recursive: true });
  const tj = JSON.parse(readFileSync(join(M, 'tokenizer.json'), 'utf8'));
  tj.added_tokens.push({ id: 600, content: '<extra>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  writeFileSync(join(extra, 'tokenizer.json'), JSON.stringify(tj));
  const out = join(root, 'out');
  const L = JSON.parse(readFileSync(join(M, 'config.json'), 'utf8')).num_hidden_layers as number;
  writeFileSync(join(root, 'plan.json'), JSON.stringify({ original_layers: L, layer_sources: Array.from({ length: L - 1 }, (_, l) => ({ sources: [{ layer: l, weight: 1 }], norms_from: l })) }));
  await tf.ready(); // tfjs' start-up notes go to the test's stderr, not a run's
  const numTensors = tf.memory().numTensors;
  const cases: [string[], string][] = [
    [['export', 'hf', '--model', bad, '--out', out], st],
    [['quantize', '--model', bad, '--method', 'rtn', '--out', out], st],
    [['export', 'gguf', '--model', bad, '--out', join(out, 'new', 'm.gguf')], st],
    [['export', 'hf', '--model', bad, '--out', join(out, 'new', 'hf')], st],
    [['export', 'gguf', '--model', bad, '--out', `${out}.gguf`], st],
    [['export', 'tfjs', '--model', bad, '--out', out], st],
    [['export', 'tfjs', '--model', longContext, '--out', out], '--max-seq 2147483647 (max_position_embeddings)'],
    [['compress', '--model', bad, '--plan', join(root, 'plan.json'), '--out', out], st],
    [['forward', '--model', bad, '--ids', '1,2', '--backend', 'cpu'], st],
    [['forward', '--model', mid, '--ids', '1,2', '--backend', 'cpu'], midFile],
    [['forward', '--model', mid, '--ids', '1,2', '--backend', 'wasm'], midFile],
    [['forward', '--model', midPacked, '--ids', '1,2', '--backend', 'cpu'], midPackedFile],
    [['eval', 'ppl', '--model', midPacked, '--text', join(root, 'plan.json'), '--backend', 'cpu'], midPackedFile],
    [['info', '--model', cfgBad], join(cfgBad, 'config.json')],
    [['forward', '--model', cfgBad, '--ids', '1', '--backend', 'cpu'], join(cfgBad, 'config.json')],
    [['generate', '--model', tokBad, '--prompt', 'a', '--backend', 'cpu'], join(tokBad, 'tokenizer.json')],
    [['generate', '--model', extra, '--prompt', 'a <extra> b', '--backend', 'cpu'], join(extra, 'tokenizer.json')],
  ];
  if (SHARED) {
    const ckpt = join(root, 'stories.bin');
    const bin = Buffer.from(readFileSync(join(SHARED, 'models/stories260K/stories260K.bin')));
    bin.writeInt32LE(2 ** 31 - 1, bin.readUInt32LE(0) === 0x616b3432 ? 16 : 8); // n_layers
    writeFileSync(ckpt, bin);
    cases.push([['convert-llama2c', '--checkpoint', ckpt, '--tokenizer', join(SHARED, 'models/stories260K/tok512.bin'), '--out', out], ckpt]);
  }
  for (const [args, file] of cases) {
    const r = await runCliInProcess([...args, '--quiet']);
    assertUserError({ ...r, stderr: r.stderr.split('\n').filter((l) => !/^backend: |^=+$|^Hi, looks like you are running TensorFlow.js/.test(l)).join('\n') }, file);
    assert.ok(!existsSync(out) && !existsSync(`${out}.gguf`), `${args.join(' ')}: no output`);
    assert.deepEqual(leftovers(root), [], `${args.join(' ')}: no temporaries left`);
    assert.equal(tf.memory().numTensors, numTensors, `${args.join(' ')}: tfjs tensors left`);
  }
});

/** Sends raw bytes to host:port and resolves with whatever comes back when the server closes or `ms` pass. */
function rawRequest(url: string, bytes: string | Buffer, ms = 2000): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(port), hostname);
    let got = '';
    const done = () => {
      s.destroy();
      resolve(got);
    };
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', done);
    s.on('close', done);
    s.setTimeout(ms, done);
    s.write(bytes, () => s.end());
  });
}

test('mka serve answers a valid request after malformed, huge, unknown and concurrent ones', async () => {
  const exported = join(root, 'export');
  await exportTfjs({ model: M, out: exported, maxSeq: 16 });
  const results: unknown[] = [];
  const s = await startServe({ model: exported, port: 0, onResult: (r) => results.push(r) });
  try {
    const rnd = rng(6);
    const raw = [
      'GARBAGE\r\n\r\n', 'GET\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', 'GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n',
      `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, `GET / HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(100_000)}\r\n\r\n`,
      'POST /api/result HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"a":', 'POST /api/result HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nx',
      'POST /api/result HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'GET /model/../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n',
      'DELETE /model/model.json HTTP/1.1\r\nHost: x\r\n\r\n', Buffer.from(Array.from({ length: 4096 }, () => rnd(256))),
    ];
    await Promise.all(raw.map((r) => rawRequest(s.url, r)));
    const posts = [
      '{"ok": true}', '{', '', 'null', '['.repeat(100_000), json({ deep: DEEP }), 'x'.repeat((1 << 20) + 10),
    ];
    const statuses = await Promise.all(posts.map((body) => fetch(`${s.url}/api/result`, { method: 'POST', body }).then((r) => r.status, () => 'reset')));
    assert.deepEqual(statuses.slice(0, 5), [204, 400, 400, 400, 400], `statuses ${statuses}`);
    assert.ok([204, 400].includes(statuses[5] as number) && [413, 'reset'].includes(statuses[6]), `statuses ${statuses}`);
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => fetch(`${s.url}/${['', 'api/config', 'model/model.json', 'nope', '%'][i % 5]}`).then((r) => r.status)));
    assert.deepEqual([...new Set(many)].sort(), [200, 400, 404]);
    const next = await fetch(`${s.url}/api/config`);
    assert.equal(next.status, 200);
    assert.equal(typeof (await next.json()).maxSeq, 'number');
    assert.ok(results.length >= 5, `results ${results.length}`);
  } finally {
    await s.close();
  }
});

/** Sends `bytes` and leaves the connection open; resolves with what the server answers once it closes the connection. */
function stalledRequest(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(port), hostname);
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => resolve(got));
    sock.write(bytes);
  });
}

test('mka serve: /api/result survives malformed JSON, wrong types, huge and endless bodies, stalled senders and a listener that throws', async () => {
  const exported = join(root, 'export-result');
  await exportTfjs({ model: M, out: exported, maxSeq: 16 });
  const results: Record<string, unknown>[] = [];
  const s = await startServe({
    model: exported, port: 0, requestTimeoutMs: 500,
    onResult: (r) => {
      if (r.boom) throw new Error('listener failed');
      results.push(r);
    },
  });
  const { MAX_RESULT_BYTES } = await import('../src/serve/server.ts');
  const post = (body: string | Uint8Array, headers: Record<string, string> = {}): Promise<[number | 'reset', number]> =>
    fetch(`${s.url}/api/result`, { method: 'POST', body: body as BodyInit, headers }).then(async (r) => [r.status, (await r.text()).split('\n').length], () => ['reset', 0]);
  try {
    const cases: [string | Uint8Array, number | string][] = [
      ['{"ok": true, "ids": [1, 2]}', 204], ['{"ok":', 400], ['', 400], ['null', 400], ['[1, 2]', 400], ['5', 400], ['"text"', 400],
      ['{"boom": true}', 500], [Buffer.from([0xff, 0xfe, 0x7b]), 400], ['{"a": 1}\n{"b": 2}', 400],
    ];
    for (const [body, want] of cases) {
      const [status, lines] = await post(body);
      assert.equal(status, want, `${JSON.stringify(String(body).slice(0, 20))}: ${status}`);
      assert.ok(lines <= 1, 'one line');
    }
    assert.deepEqual(results.filter((r) => !('error' in r)), [{ ok: true, ids: [1, 2] }]);
    assert.ok(results.filter((r) => 'error' in r).every((r) => typeof r.error === 'string'));
    // larger than the cap: declared (refused before reading), or chunked without a length
    assert.ok([413, 'reset'].includes((await post('x'.repeat(MAX_RESULT_BYTES + 1)))[0]));
    const chunked = new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(64 * 1024).fill(0x20)); } }); // endless
    const endless = await fetch(`${s.url}/api/result`, { method: 'POST', body: chunked, duplex: 'half' } as RequestInit).then((r) => r.status, () => 'reset');
    assert.ok([413, 'reset'].includes(endless), `endless body: ${endless}`);
    assert.match(await rawRequest(s.url, `POST /api/result HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 ** 40}\r\n\r\n{}`), /^HTTP\/1\.1 413 /);
    // a body that never comes, or comes too slowly: dropped by the request timeout, never answered 204
    const stalled = await Promise.all([
      stalledRequest(s.url, 'POST /api/result HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a":'),
      stalledRequest(s.url, 'POST /api/result HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n'),
      stalledRequest(s.url, 'POST /api/result HTTP/1.1\r\nHost: x\r\n'),
    ]);
    for (const got of stalled) assert.ok(got === '' || /^HTTP\/1\.1 408 /.test(got), JSON.stringify(got.slice(0, 40)));
    // other methods and routes
    for (const [method, path, want] of [['POST', '/api/nope', 405], ['PUT', '/api/result', 405], ['GET', '/api/result', 404], ['POST', '/', 405]] as const) {
      assert.equal((await fetch(`${s.url}${path}`, { method, body: method === 'GET' ? undefined : '{}' })).status, want, `${method} ${path}`);
    }
    assert.equal((await post('{"after": "all that"}'))[0], 204);
    assert.deepEqual(results.at(-1), { after: 'all that' });
  } finally {
    await s.close();
  }
});

// Regressions of scripts/fuzz-readers.ts (the mutation fuzzer of the model readers, docs/gguf.md), one per bug class it found.

test('tokenizer.json: token ids that are not ids are refused naming the file and entry; a huge one loads without a table sized by it', async () => {
  const dir = join(root, 'token-ids');
  cpSync(M, dir, { recursive: true });
  const file = join(dir, 'tokenizer.json');
  const tok = JSON.parse(readFileSync(file, 'utf8'));
  const piece = Object.keys(tok.model.vocab)[300];
  const write = (t: unknown) => writeFileSync(file, JSON.stringify(t));
  try {
    for (const id of [-1, 0.5, '7', 2 ** 53 + 2, null]) {
      write({ ...tok, model: { ...tok.model, vocab: { ...tok.model.vocab, [piece]: id } } });
      await assert.rejects(loadTokenizer(dir), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: model.vocab[${JSON.stringify(piece)}] is `)
        && /not a token id; the tokenizer is corrupt/.test(e.message) && !/\n/.test(e.message), JSON.stringify(id));
    }
    for (const id of [0.5, -3, 'x']) {
      write({ ...tok, added_tokens: [...tok.added_tokens, { id, content: '<x>', special: true }] });
      await assert.rejects(loadTokenizer(dir), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: added_tokens[${tok.added_tokens.length}] is not {"id": a token id`), JSON.stringify(id));
    }
    // an id of 2^31 made @huggingface/tokenizers' get_vocab walk two billion slots: loads, and a text holding the token is refused
    write({ ...tok, model: { ...tok.model, vocab: { ...tok.model.vocab, [piece]: 2 ** 31 } } });
    const t = await loadTokenizer(dir);
    assert.ok(t.encode('hello world').length > 0);
    assert.throws(() => t.encode(piece.replace(/^\u2581/, ' ')), (e: Error) => e instanceof UserError && e.message.startsWith(`${file}: encodes the text to token id ${2 ** 31}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sizes the checkpoint contradicts are refused as a corrupt file naming it, before the memory estimate takes them as a model too large', async () => {
  const { runForward } = await import('../src/model/inspect.ts');
  const dir = join(root, 'sizes');
  cpSync(M, dir, { recursive: true });
  const cfgFile = join(dir, 'config.json'), cfg = JSON.parse(readFileSync(cfgFile, 'utf8'));
  const notRam = (e: Error) => e instanceof UserError && !/GB of RAM/.test(e.message) && !/\n/.test(e.message);
  try {
    // config.json: a vocabulary or MLP of 2^31 - 1 (was: "forward needs about 7336 GB of RAM ...")
    for (const [k, v] of [['vocab_size', 2 ** 31 - 1], ['intermediate_size', 2 ** 31 - 1]] as const) {
      writeFileSync(cfgFile, JSON.stringify({ ...cfg, [k]: v }));
      await assert.rejects(runForward({ model: dir, ids: [1, 2] }), (e: Error) => notRam(e) && e.message.startsWith(`${join(dir, 'model.safetensors')}: tensor "`) && e.message.includes('config.json implies'), k);
    }
    writeFileSync(cfgFile, JSON.stringify(cfg));
    // GGUF metadata contradicting its tensors
    const gguf = join(root, 'sizes.gguf');
    await exportGguf({ model: M, out: gguf, type: 'q8_0', quiet: true });
    const { entries, tensors, data } = ggufParts(gguf);
    for (const key of ['llama.vocab_size', 'llama.feed_forward_length']) {
      await writeGguf(gguf, entries.map(([k, v]): [string, GgufValue] => [k, k === key ? meta.u32(2 ** 31 - 1) : v]), tensors, (n) => data.get(n)!);
      await assert.rejects(runForward({ model: gguf, ids: [1, 2] }), (e: Error) => notRam(e) && e.message.startsWith(`${gguf}: `), key);
    }
    // a packed weight's scales whose header shape is huge and its byte range consistent with it
    const Q = join(root, 'sizes-rtn');
    const r = await runCliInProcess(['quantize', '--model', M, '--method', 'rtn', '--out', Q, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    const st = join(Q, 'model.safetensors');
    const { header, data: bytes } = splitSafetensors(readFileSync(st));
    const scales = Object.keys(header).find((k) => k.endsWith('.scales'))!;
    writeFileSync(st, joinSafetensors(JSON.stringify({ ...header, [scales]: { ...header[scales], shape: [2 ** 26, 2 ** 26], data_offsets: [0, 2 ** 53] } }), bytes));
    await assert.rejects(runForward({ model: Q, ids: [1, 2] }), (e: Error) => notRam(e) && e.message.startsWith(`${st}: tensor ${JSON.stringify(scales)} `));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GGUF: a tensor type or dimension that changes its size is refused by the data offsets, as llama.cpp does, not read as other values', async () => {
  const file = join(root, 'layout.gguf');
  await exportGguf({ model: M, out: file, type: 'f16', quiet: true });
  const good = readFileSync(file);
  // the tensor description after the name: u32 dimension count, u64 dimensions, u32 type, u64 offset
  const name = 'blk.3.attn_norm.weight';
  const at = good.indexOf(Buffer.from(name)) + name.length;
  assert.equal(good.readUInt32LE(at), 1);
  const typeAt = at + 4 + 8;
  assert.equal(good.readUInt32LE(typeAt), 0, 'an F32 norm');
  const o = new Outcomes();
  // BF16 (half the bytes: its words were the F32 values' halves, finite but up to 1e38, and the forward gave NaN), F16, Q8_0's block of 32
  for (const type of [30, 1, 8]) {
    const b = Buffer.from(good);
    b.writeUInt32LE(type, typeAt);
    writeFileSync(file, b);
    await o.run(`type ${type}`, [file], () => loadAll(file, false));
  }
  for (const dim of [32, 128]) {
    const b = Buffer.from(good);
    b.writeBigUInt64LE(BigInt(dim), at + 4);
    writeFileSync(file, b);
    await o.run(`dimension ${dim}`, [file], async () => {
      try {
        await loadAll(file, false);
      } catch (e) {
        assert.match((e as Error).message, /has data offset \d+, but the tensors before it end at \d+/);
        throw e;
      }
    });
  }
  assert.equal(o.ok, 0);
  o.check(5);
});

/** A copy of the demo model with four finite but absurd weights (-3.2e38: a flipped exponent bit) in one MLP, whose pass overflows float32. */
async function overflowModel(name: string): Promise<string> {
  const { SafetensorsFile } = await import('../src/io/safetensors.ts');
  const dir = join(root, name);
  cpSync(M, dir, { recursive: true });
  const file = join(dir, 'model.safetensors');
  const st = new SafetensorsFile(file);
  const { begin } = st.tensors.get('model.layers.2.mlp.up_proj.weight')!;
  st.close();
  const b = readFileSync(file);
  for (const i of [1, 100, 320, 321]) b.writeFloatLE(-3.2006820762560308e38, begin + 4 * i);
  writeFileSync(file, b);
  return dir;
}

test('forward: logits that overflow (finite weights of -3.2e38: a flipped exponent bit) are refused naming the model, not written as null', async () => {
  const { runForward } = await import('../src/model/inspect.ts');
  const dir = await overflowModel('overflow');
  const before = tf.memory().numTensors;
  try {
    await assert.rejects(runForward({ model: dir, ids: [1, 5, 9, 300], logits: 'all', hiddenStates: true }),
      (e: Error) => e instanceof UserError && e.message.startsWith(`${dir}: the forward pass gives NaN logits (position `) && e.message.endsWith('or pass --allow-nonfinite to write them anyway'));
    assert.equal(tf.memory().numTensors, before);
    process.env.MKA_ALLOW_NONFINITE = '1';
    const r = await runForward({ model: dir, ids: [1, 5, 9, 300] });
    assert.ok(r.top_k.length > 0);
  } finally {
    delete process.env.MKA_ALLOW_NONFINITE;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluation: logits that overflow are refused naming the model in every scorer (task spans, MMLU letters, perplexity windows), leaking no tensors', async () => {
  const { loadModel, disposeModel } = await import('../src/model/model.ts');
  const { scorePlans } = await import('../src/eval/scoring/rows.ts');
  const { windowNll } = await import('../src/eval/ppl/evaluate.ts');
  const dir = await overflowModel('overflow-eval');
  const ids = [1, 5, 9, 300];
  const spans = { rows: [{ ids, targets: [{ start: 1, tokens: [9, 300] }] }], groups: [], alone: [0] };
  const letters = { rows: [{ ids, targets: [], logits: { position: 3, ids: [5, 9] } }], groups: [], alone: [0] };
  const refused = (use: string) => (e: Error) => e instanceof UserError && e.message.startsWith(`${dir}: the forward pass gives NaN logits (`) && e.message.endsWith(`or pass --allow-nonfinite to ${use} anyway`);
  const before = tf.memory().numTensors;
  const model = loadModel(dir);
  try {
    for (const plan of [spans, letters]) {
      await assert.rejects(scorePlans(model, [plan], { size: 0, maxPadding: 0.1 }, async () => {}), refused('score them'));
    }
    assert.throws(() => windowNll(model, ids, { begin: 0, end: 4, scoredFrom: 1 }), refused('score them'));
    process.env.MKA_ALLOW_NONFINITE = '1';
    const [[r]] = await scorePlans(model, [spans], { size: 0, maxPadding: 0.1 }, async () => {});
    assert.ok(Number.isNaN(r.spans[0].logProb), 'allowed: the NaN is scored as it is');
  } finally {
    delete process.env.MKA_ALLOW_NONFINITE;
    disposeModel(model);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(tf.memory().numTensors, before);
});

test('eval mmlu and eval ppl refused mid-run (logits that overflow) leave --out as they found it: absent, or empty', async () => {
  const { ensureBenchmark } = await import('../src/eval/mmlu/demo-benchmark.ts');
  const dir = await overflowModel('overflow-cli');
  const data = join(root, 'overflow-mmlu'), text = join(root, 'overflow.txt');
  await ensureBenchmark(data);
  writeFileSync(text, 'Once upon a time there was a model. '.repeat(20));
  const out = (n: string) => join(root, 'overflow-out', n);
  mkdirSync(out('empty-mmlu'), { recursive: true });
  mkdirSync(out('empty-ppl'));
  try {
    const runs: [string[], string][] = [
      [['eval', 'mmlu', '--model', dir, '--data', data, '--limit', '1', '--out', out('mmlu')], 'mmlu'],
      [['eval', 'mmlu', '--model', dir, '--data', data, '--limit', '1', '--out', out('empty-mmlu')], 'empty-mmlu'],
      [['eval', 'ppl', '--model', dir, '--text', text, '--seq-len', '16', '--out', out('ppl')], 'ppl'],
      [['eval', 'ppl', '--model', dir, '--text', text, '--seq-len', '16', '--out', out('empty-ppl')], 'empty-ppl'],
    ];
    for (const [args] of runs) assertUserError(await runCliInProcess([...args, '--quiet']), `${dir}: the forward pass gives NaN logits`);
    // the results directory was begun (marker, run key) before the first pass was refused: nothing of it stays
    assert.deepEqual(readdirSync(out('')).sort(), ['empty-mmlu', 'empty-ppl']);
    for (const n of ['empty-mmlu', 'empty-ppl']) assert.deepEqual(readdirSync(out(n)), [], `${n}: as empty as it was`);
    assert.deepEqual(leftovers(join(root, 'overflow-out')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(root, 'overflow-out'), { recursive: true, force: true });
  }
});

test('similarity and compress: a calibration pass that overflows is refused naming the model and the block (not an eigensolver error), leaking no tensors', async () => {
  const { loadModel, disposeModel } = await import('../src/model/model.ts');
  const { calibrate } = await import('../src/compress/calibration.ts');
  const dir = await overflowModel('overflow-calibration');
  const prompts = join(root, 'overflow-prompts.txt'), out = join(root, 'overflow-compressed');
  writeFileSync(prompts, 'The capital of France is Paris.\nQuestion: What is 7 + 5?\nThe quick brown fox jumps over the lazy dog.\nLayers are merged by similarity.\n');
  const before = tf.memory().numTensors;
  const model = loadModel(dir);
  try {
    for (const layerStates of ['output', 'input'] as const) {
      assert.throws(() => calibrate(model, [[1, 5, 9, 300], [1, 7, 7]], { layerStates }), (e: Error) => e instanceof UserError
        && e.message.startsWith(`${dir}: the calibration pass gives `) && e.message.includes(layerStates === 'output' ? '(block 2\'s output)' : '(block 3\'s input)'));
    }
  } finally {
    disposeModel(model);
  }
  assert.equal(tf.memory().numTensors, before);
  try {
    for (const method of ['mka', 'shortgpt']) {
      const r = await runCliInProcess(['compress', '--model', dir, '--calibration', prompts, '--method', method, '--remove', '2', '--k-entropy', '3', '--k-mi', '2', '--out', out, '--quiet']);
      assertUserError(r, `${dir}: the calibration pass gives`, 'hidden states', 're-download');
      assert.equal(existsSync(out), false);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('quantize: a weight whose group scale overflows float16 is refused naming the model, the tensor and where it is', async () => {
  const dir = await overflowModel('overflow-quantize');
  const prompts = join(root, 'overflow-quantize.txt'), out = join(root, 'overflow-quantized');
  writeFileSync(prompts, 'The capital of France is Paris.\nQuestion: What is 7 + 5?\nThe quick brown fox jumps over the lazy dog.\n');
  try {
    for (const args of [['--method', 'rtn'], ['--method', 'gptq', '--calibration', prompts], ['--method', 'rtn', '--bits', '8', '--group-size', '0']]) {
      const r = await runCliInProcess(['quantize', '--model', dir, ...args, '--out', out, '--quiet']);
      assertUserError(r, `${dir}: tensor "model.layers.2.mlp.up_proj.weight" holds -3.20068`, 'at row 0, column 1', 'overflow float16', 're-download');
      assert.equal(existsSync(out), false);
    }
    // the embedding, rounded as a table a block of rows at a time, says its row
    const file = join(dir, 'model.safetensors');
    const { SafetensorsFile } = await import('../src/io/safetensors.ts');
    const st = new SafetensorsFile(file, { allowNonFinite: true });
    const { begin } = st.tensors.get('model.embed_tokens.weight')!;
    st.close();
    const b = readFileSync(file);
    b.writeFloatLE(3e38, begin + 4 * (5 * 64 + 3));
    writeFileSync(file, b);
    assertUserError(await runCliInProcess(['quantize', '--model', dir, '--method', 'rtn', '--out', out, '--quiet']), `${dir}: tensor "model.embed_tokens.weight" holds 3`, 'at row 5, column 3');
    assert.equal(existsSync(out), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('exports refuse a weight their type cannot hold (it would be written as Infinity), naming the model, the tensor and the wider type', async () => {
  const dir = await overflowModel('overflow-export');
  const out = join(root, 'overflow-exported');
  try {
    const cases: [string[], string][] = [
      ...['f16', 'q8_0', 'q4_0'].map((type): [string[], string] => [['export', 'gguf', '--model', dir, '--type', type, '--out', `${out}.gguf`], '--type f32 or bf16']),
      [['export', 'hf', '--model', dir, '--dtype', 'float16', '--out', out], '--dtype float32 or bfloat16'],
      [['export', 'tfjs', '--model', dir, '--quantize', 'float16', '--out', out], 'store it as none, uint8 or uint16'],
    ];
    for (const [args, fix] of cases) {
      assertUserError(await runCliInProcess([...args, '--quiet']), `${dir}: tensor "model.layers.2.mlp.up_proj.weight"`, 'holds -3.20068', 'at index 1,', fix);
      assert.equal(existsSync(out) || existsSync(`${out}.gguf`), false, `${args.join(' ')}: nothing written`);
    }
    // bf16 holds it (as absurd as the source, which forward refuses in turn)
    const r = await runCliInProcess(['export', 'gguf', '--model', dir, '--type', 'bf16', '--out', `${out}.gguf`, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${out}.gguf`, { force: true });
  }
});

test('forward: a text longer than the model\'s context is refused naming the option and the model', async () => {
  const { runForward } = await import('../src/model/inspect.ts');
  const dir = join(root, 'context');
  cpSync(M, dir, { recursive: true });
  const cfgFile = join(dir, 'config.json');
  writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), max_position_embeddings: 2 }));
  try {
    await assert.rejects(runForward({ model: dir, ids: [1, 2, 3] }), (e: Error) => e instanceof UserError && e.message === `--ids is 3 tokens, more than the context of ${dir} (max_position_embeddings 2); shorten it`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the fuzz leaves the demo copy as it was', () => {
  assert.deepEqual(readdirSync(M).sort(), readdirSync('models/demo').sort());
  for (const f of readdirSync(M)) assert.ok(readFileSync(join(M, f)).equals(readFileSync(join('models/demo', f))), f);
  mkdirSync(join(root, 'done'));
});
