/**
 * Makes test/goldens/gguf/*.json: what independent implementations make of the GGUF files `mka export
 * gguf` writes, so that mka's tests check against them without llama.cpp or Python:
 *
 * - llama.cpp itself (probe.cpp, built here against a llama.cpp build): the prompt's token ids, the
 *   ids of a set of texts, logits at a few positions (F32 KV cache, one thread) and a greedy
 *   continuation;
 * - the gguf package and transformers' GGUF loader (reference.py, run with the reference venv): the
 *   metadata and tensors the package reads, its dequantization of every tensor, the bytes llama.cpp's
 *   converter rules and gguf-py's quantizers give from the Hugging Face checkpoint, and transformers'
 *   logits;
 * - llama.cpp's quantized products (mm.c: ggml_mul_mat on Q8_0/Q4_0/Q4_1 weights, activations
 *   quantized to its Q8_0/Q8_1 blocks), and its logits on a model every product of which is quantized;
 * - ggml's reference quantizers (quant.c, linked against libggml-base) on values chosen to hit their
 *   edge cases, and its k-quant quantizers and dequantizers (kquant.c) with gguf-py's dequantization of
 *   the same blocks.
 *
 *   npx tsx test/goldens/gguf/make.ts --llama ~/llama.cpp --python /work/refvenv/bin/python --shared ../shared
 *
 * (one to two minutes on two cores; the Llama 3 tiny model alone is 33 MB of BF16)
 *
 * (--llama: a llama.cpp checkout built with cmake into build/; the goldens record its commit.)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { exportGguf, type GgufOutType } from '../../../src/export/gguf.ts';
import {
  ASCII_TEXTS, DEMO_PROMPT, DEMO_TYPES, GREEDY_TOKENS, HF_TINY, LLAMA3_PROMPT, LLAMA3_SPECIAL_TEXT, MERGED_PLAN, MERGED_TYPES, SPM_SPECIAL_TEXT,
  PACKED_CASES, STORIES_PROMPT, STORIES_TYPES, UNICODE_TEXTS, convertStories, makeLlama3Tiny, makeMergedDemo, makePackedDemo,
  INT8_MODEL_CASES, INT8_PRODUCTS, int8Product, makePaddedDemo, tensorShas,
} from './cases.ts';
import { KQUANT_VALUES, QUANT_EDGE_VALUES } from './quant-values.ts';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const OUT = join(ROOT, 'test', 'goldens', 'gguf');

interface Probe { n_vocab: number; ids: number[]; logits: number[][]; greedy: number[]; greedy_logits: number[][] }

const round = (x: number, digits: number) => Number(x.toPrecision(digits));

/** The golden files, by name (test/goldens/gguf/NAME.json). */
const GOLDENS = ['demo', 'stories260K', 'llama3-tiny', 'hf-tiny', 'kquants', 'quantizers', 'compressed', 'packed', 'int8'] as const;

async function main(): Promise<void> {
  const a = await yargs(hideBin(process.argv))
    .option('llama', { type: 'string', demandOption: true, describe: 'llama.cpp checkout, built into build/' })
    .option('python', { type: 'string', demandOption: true, describe: 'python of the reference venv' })
    .option('shared', { type: 'string', demandOption: true, describe: 'the shared data directory' })
    .option('commit', { type: 'string', describe: 'llama.cpp commit built (default: git rev-parse HEAD in --llama)' })
    .option('only', { type: 'string', describe: `comma-separated goldens to make (default all): ${GOLDENS.join(', ')}` })
    .strict().parse();
  const only = a.only?.split(',') ?? [...GOLDENS];
  const unknown = only.filter((n) => !(GOLDENS as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`--only: unknown golden(s) ${unknown.join(', ')}; choose from ${GOLDENS.join(', ')}`);
  const want = (name: (typeof GOLDENS)[number]) => only.includes(name);
  const llama = resolve(a.llama), shared = resolve(a.shared);
  const tmp = mkdtempSync(join(tmpdir(), 'gguf-goldens-'));
  const lib = join(llama, 'build', 'bin');
  const probe = join(tmp, 'probe'), quant = join(tmp, 'quant');
  execFileSync('g++', ['-O2', '-std=c++17', join(import.meta.dirname, 'probe.cpp'), `-I${join(llama, 'include')}`, `-I${join(llama, 'ggml', 'include')}`,
    `-L${lib}`, '-lllama', '-lggml', '-lggml-base', `-Wl,-rpath,${lib}`, '-o', probe]);
  execFileSync('gcc', ['-O2', join(import.meta.dirname, 'quant.c'), `-L${lib}`, '-lggml-base', `-Wl,-rpath,${lib}`, '-o', quant]);
  const mm = join(tmp, 'mm');
  execFileSync('gcc', ['-O2', join(import.meta.dirname, 'mm.c'), `-I${join(llama, 'ggml', 'include')}`, `-L${lib}`, '-lggml', '-lggml-base', '-lggml-cpu', `-Wl,-rpath,${lib}`, '-o', mm]);
  const commit = a.commit ?? execFileSync('git', ['-C', llama, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  const pyVersions = JSON.parse(execFileSync(a.python, ['-c', 'import refenv, gguf, transformers, importlib.metadata as m, json; print(json.dumps({"gguf": m.version("gguf"), "transformers": transformers.__version__}))'],
    { env: { ...process.env, PYTHONPATH: join(shared, 'reference') }, encoding: 'utf8' }).trim().split('\n').pop()!);
  const madeWith = { llama_cpp: commit, ...pyVersions, note: 'llama.cpp: probe.cpp, F32 KV cache, 1 thread; made by test/goldens/gguf/make.ts' };

  const runProbe = (file: string, input: string): Probe =>
    JSON.parse(execFileSync(probe, [file, input, String(GREEDY_TOKENS)], { encoding: 'utf8', maxBuffer: 1 << 30 }));
  const tokenize = (file: string, texts: string[]): number[][] => {
    const f = join(tmp, 'texts.bin');
    writeFileSync(f, texts.join('\0'));
    return JSON.parse(execFileSync(probe, [file, 'tokenize', f], { encoding: 'utf8', maxBuffer: 1 << 28 }));
  };
  const python = (jobs: object[]): Record<string, unknown>[] => {
    const r = spawnSync(a.python, [join(import.meta.dirname, 'reference.py')], {
      input: JSON.stringify(jobs), env: { ...process.env, PYTHONPATH: join(shared, 'reference') }, encoding: 'utf8', maxBuffer: 1 << 30,
    });
    if (r.status !== 0) throw new Error(`reference.py failed:\n${r.stderr}`);
    return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  };
  const exportTo = async (model: string, type: GgufOutType, name: string) => {
    const file = join(tmp, `${name}-${type}.gguf`);
    await exportGguf({ model, out: file, type, quiet: true });
    return file;
  };
  /** llama.cpp's view of a file: ids, full logits rows at `positions`, greedy tokens. */
  const llamaView = (file: string, input: string, positions: (T: number) => number[], topK?: number) => {
    const p = runProbe(file, input);
    const pos = positions(p.ids.length);
    const row = (l: number[]) => (topK ? topIds(l, topK).map((i) => [i, round(l[i], 8)]) : l.map((x) => round(x, 8)));
    return { ids: p.ids, positions: pos, logits: pos.map((i) => row(p.logits[i])), greedy: p.greedy, greedy_last_logits: row(p.greedy_logits[p.greedy_logits.length - 1]) };
  };
  const ends = (T: number) => [...new Set([0, Math.floor(T / 2), T - 1])];

  // demo: every type; transformers' loader for f16, q8_0, q4_0
  if (want('demo')) {
    const files = Object.fromEntries(await Promise.all(DEMO_TYPES.map(async (t) => [t, await exportTo(join(ROOT, 'models', 'demo'), t, 'demo')])));
    const ids = runProbe(files.f32, `text:${DEMO_PROMPT}`).ids;
    const refs = python(DEMO_TYPES.map((t) => ({ gguf: files[t], source: join(ROOT, 'models', 'demo'), type: t, ids: t === 'f32' ? null : ids })));
    const types: Record<string, unknown> = {};
    for (const [k, t] of DEMO_TYPES.entries()) {
      const r = refs[k] as { transformers_logits?: number[][] };
      types[t] = {
        ...refs[k],
        transformers_logits: r.transformers_logits?.map((row) => row.map((x) => Math.round(x * 1e5) / 1e5)),
        llamacpp: llamaView(files[t], `text:${DEMO_PROMPT}`, ends),
        // llama.cpp multiplies F16/Q8_0/Q4_0 weights with activations rounded to F16/Q8_0: the same weights
        // written as F32 (mka's re-export of this file) give the exact products to compare with
        llamacpp_f32: t === 'f32' ? undefined : llamaView(await exportTo(files[t], 'f32', `demo-${t}-as`), `text:${DEMO_PROMPT}`, ends),
      };
    }
    const texts = [...ASCII_TEXTS, SPM_SPECIAL_TEXT];
    write('demo.json', { made_with: madeWith, model: 'models/demo', prompt: DEMO_PROMPT, tokenize: { texts, llamacpp_ids: tokenize(files.f32, texts) }, types });
  }
  // stories260K, converted with mka convert-llama2c
  if (want('stories260K')) {
    const dir = join(tmp, 'stories260K');
    await convertStories(shared, dir);
    const files = Object.fromEntries(await Promise.all(STORIES_TYPES.map(async (t) => [t, await exportTo(dir, t, 'stories')])));
    const refs = python(STORIES_TYPES.map((t) => ({ gguf: files[t], source: dir, type: t, ids: null })));
    const types: Record<string, unknown> = {};
    for (const [k, t] of STORIES_TYPES.entries()) {
      types[t] = {
        ...refs[k], llamacpp: llamaView(files[t], `text:${STORIES_PROMPT}`, ends),
        llamacpp_f32: t === 'f32' ? undefined : llamaView(await exportTo(files[t], 'f32', `stories-${t}-as`), `text:${STORIES_PROMPT}`, ends),
      };
    }
    const texts = [...UNICODE_TEXTS, SPM_SPECIAL_TEXT];
    write('stories260K.json', { made_with: madeWith, model: 'stories260K (mka convert-llama2c)', prompt: STORIES_PROMPT, tokenize: { texts, llamacpp_ids: tokenize(files.f32, texts) }, types });
  }
  // the tiny Llama 3 model: the real Llama 3 tokenizer (gpt2, llama-bpe), llama3 rope scaling (rope_freqs), chat template
  if (want('llama3-tiny')) {
    const dir = join(tmp, 'llama3-tiny');
    await makeLlama3Tiny(dir);
    const file = await exportTo(dir, 'f32', 'llama3-tiny');
    const [ref] = python([{ gguf: file, source: dir, type: 'f32', ids: null }]);
    const texts = [...UNICODE_TEXTS, LLAMA3_SPECIAL_TEXT];
    write('llama3-tiny.json', {
      made_with: madeWith, model: 'test/goldens/gguf/cases.ts LLAMA3_TINY', prompt: LLAMA3_PROMPT,
      tokenize: { texts, llamacpp_ids: tokenize(file, texts) },
      types: { f32: { gguf_py: (ref as { gguf_py: unknown }).gguf_py, reference_sha256: (ref as { reference_sha256: unknown }).reference_sha256, llamacpp: llamaView(file, `text:${LLAMA3_PROMPT}`, ends, 32) } },
    });
  }
  // hf-tiny: Llama, llama3 rope scaling, tied F16, Mistral, Qwen2 biases (no tokenizers: token ids)
  if (want('hf-tiny')) {
    const cases: Record<string, unknown> = {};
    for (const name of HF_TINY) {
      const dir = join(shared, 'fixtures', 'hf-tiny', name);
      const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { sequences: { input_ids: number[] }[] };
      const ids = golden.sequences[0].input_ids;
      const file = await exportTo(dir, 'f32', name);
      const [ref] = python([{ gguf: file, source: dir, type: 'f32', ids: null }]);
      // llama.cpp's own quantizer on mka's F32 file, where every row divides into blocks of 32
      const llamaQuantize: Record<string, Record<string, string>> = {};
      if (name === 'b_llama3_gqa_bf16_sharded') {
        for (const t of ['Q8_0', 'Q4_0']) {
          const q = join(tmp, `${name}-lq-${t}.gguf`);
          execFileSync(join(lib, 'llama-quantize'), ['--pure', file, q, t, '1'], { stdio: 'ignore' });
          llamaQuantize[t.toLowerCase()] = tensorShas(q);
        }
      }
      cases[name] = {
        ...ref, dequant_sha256: undefined, llamacpp: llamaView(file, `ids:${ids.join(',')}`, (T) => [...Array(T).keys()]),
        llama_quantize_sha256: Object.keys(llamaQuantize).length ? llamaQuantize : undefined,
      };
    }
    write('hf-tiny.json', { made_with: madeWith, type: 'f32', cases });
  }
  // ggml's k-quant (and Q4_1/Q5_0/Q5_1) quantizers and dequantizers, and gguf-py's dequantization of the same blocks
  if (want('kquants')) {
    const kquant = join(tmp, 'kquant');
    execFileSync('gcc', ['-O2', `-I${join(llama, 'ggml', 'include')}`, join(import.meta.dirname, 'kquant.c'), `-L${lib}`, '-lggml-base', `-Wl,-rpath,${lib}`, '-o', kquant]);
    const x = KQUANT_VALUES();
    const lines = execFileSync(kquant, { input: Buffer.from(x.buffer), encoding: 'utf8', maxBuffer: 1 << 28 }).trim().split('\n').map((l) => l.split(' '));
    const refs = python(lines.map(([type, blocks]) => ({ type, blocks_hex: blocks, rows: x.length / 256 })));
    write('kquants.json', {
      made_with: madeWith, values: 'test/goldens/gguf/quant-values.ts KQUANT_VALUES()', values_sha256: sha(new Uint8Array(x.buffer)),
      types: Object.fromEntries(lines.map(([type, blocks, values], k) => [type, {
        blocks_hex: blocks, ggml_dequant_sha256: sha(Buffer.from(values, 'hex')), gguf_py_dequant_sha256: (refs[k] as { dequant_sha256: string }).dequant_sha256,
      }])),
    });
  }
  // a merged model (compress --plan): what llama.cpp's converter writes from it, and llama.cpp running mka's GGUF of it
  if (want('compressed')) {
    const dir = join(tmp, 'demo-merged');
    await makeMergedDemo(ROOT, dir);
    const files = Object.fromEntries(await Promise.all(MERGED_TYPES.map(async (t) => [t, await exportTo(dir, t, 'merged')])));
    const refs = python(MERGED_TYPES.map((t) => ({ gguf: files[t], source: dir, type: t, ids: null })));
    const types: Record<string, unknown> = {};
    for (const [k, t] of MERGED_TYPES.entries()) {
      const { gguf_py, dequant_sha256, reference_sha256 } = refs[k] as Record<string, unknown>;
      types[t] = {
        gguf_py: { tensors: (gguf_py as { tensors: unknown }).tensors }, dequant_sha256, reference_sha256,
        llamacpp: llamaView(files[t], `text:${DEMO_PROMPT}`, ends),
        llamacpp_f32: t === 'f32' ? undefined : llamaView(await exportTo(files[t], 'f32', `merged-${t}-as`), `text:${DEMO_PROMPT}`, ends),
      };
    }
    write('compressed.json', { made_with: madeWith, model: `models/demo merged by ${MERGED_PLAN} (mka compress --plan)`, prompt: DEMO_PROMPT, types });
  }
  // packed models (mka quantize of the merged model) exported with their own blocks: what the gguf package and llama.cpp make of them
  if (want('packed')) {
    const merged = join(tmp, 'packed-merged');
    await makeMergedDemo(ROOT, merged);
    const cases: Record<string, unknown> = {};
    for (const c of PACKED_CASES) {
      const dir = join(tmp, `packed-${c.name}`);
      await makePackedDemo(merged, dir, c.quantize);
      const file = await exportTo(dir, c.type, `packed-${c.name}`);
      const [ref] = python([{ gguf: file, source: null, type: c.type, ids: null }]);
      const { gguf_py, dequant_sha256 } = ref as Record<string, unknown>;
      cases[c.name] = {
        quantize: c.quantize, type: c.type, gguf_py: { tensors: (gguf_py as { tensors: unknown }).tensors }, dequant_sha256, tensor_sha256: tensorShas(file),
        llamacpp: llamaView(file, `text:${DEMO_PROMPT}`, ends),
        llamacpp_f32: llamaView(await exportTo(file, 'f32', `packed-${c.name}-as`), `text:${DEMO_PROMPT}`, ends),
      };
    }
    write('packed.json', { made_with: madeWith, model: `models/demo merged by ${MERGED_PLAN}, then mka quantize`, prompt: DEMO_PROMPT, cases });
  }
  // llama.cpp's quantized products (activations to Q8_0/Q8_1 blocks): single products, and the padded demo whose every product is one
  if (want('int8')) {
    const products = INT8_PRODUCTS.map((_, i) => {
      const p = int8Product(i);
      const input = Buffer.concat([Buffer.from(new Int32Array([p.ggmlType, p.n, p.k, p.m]).buffer), Buffer.from(p.blocks), Buffer.from(p.x.buffer)]);
      const out = execFileSync(mm, ['1'], { input, maxBuffer: 1 << 28 });
      const y = new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + p.m * p.n * 4));
      return { type: p.type, m: p.m, n: p.n, k: p.k, blocks_sha256: sha(p.blocks), x_sha256: sha(new Uint8Array(p.x.buffer)), y: Array.from(y, (v) => round(v, 9)) };
    });
    const padded = join(tmp, 'int8-padded');
    await makePaddedDemo(ROOT, padded);
    const models: Record<string, unknown> = {};
    for (const c of INT8_MODEL_CASES) {
      const dir = join(tmp, `int8-${c.name}`);
      await makePackedDemo(padded, dir, c.quantize);
      const file = await exportTo(dir, c.type, `int8-${c.name}`);
      models[c.name] = { quantize: c.quantize, type: c.type, tensor_sha256: tensorShas(file), llamacpp: llamaView(file, `text:${DEMO_PROMPT}`, ends) };
    }
    write('int8.json', { made_with: madeWith, products, model: 'models/demo with its MLP padded to 192 zero neurons (cases.ts makePaddedDemo), then mka quantize', prompt: DEMO_PROMPT, models });
  }
  // ggml's reference quantizers on edge-case values
  if (want('quantizers')) {
    const x = QUANT_EDGE_VALUES();
    const out = execFileSync(quant, { input: Buffer.from(x.buffer) });
    const n8 = (x.length / 32) * 34;
    write('quantizers.json', {
      made_with: madeWith, values: 'test/goldens/gguf/quant-values.ts QUANT_EDGE_VALUES()', values_sha256: sha(new Uint8Array(x.buffer)),
      q8_0_hex: out.subarray(0, n8).toString('hex'), q4_0_hex: out.subarray(n8).toString('hex'),
    });
  }
  rmSync(tmp, { recursive: true, force: true });
}

/** sha256 of each tensor's data in a GGUF file (mka's reader, which checks the layout llama.cpp wrote). */
function topIds(row: number[], k: number): number[] {
  return [...row.keys()].sort((i, j) => row[j] - row[i] || i - j).slice(0, k);
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function write(name: string, value: unknown): void {
  writeFileSync(join(OUT, name), JSON.stringify(value) + '\n');
  process.stderr.write(`wrote ${join(OUT, name)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
