/**
 * mka's native kernels (native/*.c) against float64 references written here, with explicit
 * tolerances: matmul (odd shapes, m = 1, transposes, broadcasting idx, bias + activation,
 * accumulate, bf16/f16 B), linear on every weight format (bf16 panels: packBf16 against the
 * layout's JS definition, products against bf16-rounded operands summed in float64; contract 1's
 * packed integers against float64 of the dequantized weights), attention
 * (GQA, sliding window, kvB = 1, T < S), rmsnorm, rope, siluMul, gatherRows, toFloat32, and the
 * descriptor checks. The file re-runs itself under MKA_ISA=<each lower level> (generic, avx2,
 * avx512, vnni, bf16 as this CPU has them) and MKA_ISA=amx-emulated (the AMX kernels' tile
 * schedule on emulated tiles, any CPU), so every path this CPU can take is tested.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { DEFAULT_ADDON_PATH, loadNativeAddon, bf16PackedWords, unpackBf16Panels, BF16, BF16P, F16, F32, Q4, Q8, type ElementType, type NativeAddon } from '../src/runtime/native-addon.ts';
import { readFileSync } from 'node:fs';
import { roundHalf } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const NOT_BUILT = !existsSync(process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH) && 'native addon not built (npm run build:native needs a C compiler and make)';
const addon = (): NativeAddon => {
  const loaded = loadNativeAddon();
  if (!loaded.addon) throw new Error(loaded.reason);
  return loaded.addon;
};

/**
 * The float64 references by case, computed once per run of this file: the runs under each MKA_ISA level
 * (children of the last test) read the parent's from the file MKA_TEST_REFERENCES names instead of
 * computing the same arrays from the same inputs again (most of a child's time). A key names everything its
 * reference is computed from.
 */
const REFERENCES = new Map<string, Float64Array[]>(process.env.MKA_TEST_REFERENCES
  ? Object.entries(JSON.parse(readFileSync(process.env.MKA_TEST_REFERENCES, 'utf8')) as Record<string, string[]>)
    .map(([key, arrays]) => [key, arrays.map((b) => new Float64Array(Uint8Array.from(Buffer.from(b, 'base64')).buffer))])
  : []);

function reference(key: string, compute: () => Float64Array[]): Float64Array[] {
  let r = REFERENCES.get(key);
  if (!r) REFERENCES.set(key, (r = compute()));
  return r;
}

/** Writes the references computed so far for the children (MKA_TEST_REFERENCES). */
function writeReferences(file: string): void {
  writeFileSync(file, JSON.stringify(Object.fromEntries([...REFERENCES].map(([key, arrays]) =>
    [key, arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64'))]))));
}

/** Deterministic pseudo-random values in [-scale, scale). */
function values(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    out[i] = ((x >>> 8) / 2 ** 23 - 1) * scale;
  }
  return out;
}

/** IEEE half bits to a number, written from the format's definition (independent of the C code). */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  if (exp === 0) return sign * man * 2 ** -24;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** Nearest half (round to nearest even is not needed: any half is a valid input). */
function numberToHalf(x: number): number {
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | (Math.round((a / 2 ** e - 1) * 1024) & 0x3ff);
}

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const bf16ToNumber = (h: number) => ((u32[0] = h << 16), f32[0]);
const numberToBf16 = (x: number) => ((f32[0] = x), u32[0] >>> 16);
/** float32 to bf16 rounding to nearest even (what the bf16 products do to weights, and to activations, whose denormals they flush). */
const numberToBf16Even = (x: number) => ((f32[0] = x), ((u32[0] + 0x7fff + ((u32[0] >>> 16) & 1)) >>> 16) & 0xffff);
const type0 = (c: { type?: ElementType }) => c.type ?? F32;

/** B of a type: its raw storage and the exact values the kernel must see. */
function typed(v: Float32Array, type: ElementType): { raw: Float32Array | Uint16Array; exact: Float64Array } {
  if (type === F32) return { raw: v, exact: Float64Array.from(v) };
  const raw = Uint16Array.from(v, type === BF16 ? numberToBf16 : numberToHalf);
  return { raw, exact: Float64Array.from(raw, type === BF16 ? bf16ToNumber : halfToNumber) };
}

const maxAbs = (x: ArrayLike<number>) => { let m = 0; for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i])); return m; };

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0, at = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= worst)) { worst = e; at = i; }
  }
  assert.ok(worst <= tol, `${what}: error ${worst} at ${at} (got ${got[at]}, want ${want[at]}) > tolerance ${tol}`);
}

interface MatmulCase {
  m: number; n: number; k: number; ta?: boolean; tb?: boolean; batch?: number; batchA?: number; batchB?: number;
  idx?: number[]; bias?: number; act?: number; acc?: boolean; type?: ElementType;
}

/** Runs one matmul case through the addon on each thread count and checks it against float64; the operands share one heap. */
function checkMatmul(c: MatmulCase, seed: number, threads: readonly number[]): void {
  const { m, n, k, ta = false, tb = false, act = 0, acc = false, type = F32 } = c;
  const batch = c.batch ?? 1, batchA = c.batchA ?? batch, batchB = c.batchB ?? batch;
  const a = values(batchA * m * k, seed), bv = values(batchB * k * n, seed + 1);
  const aRef = a;
  const b = typed(bv, type);
  const bias = c.bias ? values(c.bias, seed + 2, 3) : null;
  const c0 = values(batch * m * n, seed + 3, 2);
  const idx = c.idx ? Int32Array.from(c.idx) : null;
  const [want] = reference(`matmul ${JSON.stringify(c)} ${seed}`, () => {
    const want = new Float64Array(batch * m * n);
    for (let bi = 0; bi < batch; bi++) {
      const ia = idx ? idx[2 * bi] : bi, ib = idx ? idx[2 * bi + 1] : bi;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            const av = aRef[ia * m * k + (ta ? p * m + i : i * k + p)];
            s += av * b.exact[ib * k * n + (tb ? j * k + p : p * n + j)];
          }
          if (bias) s += bias.length === 1 ? bias[0] : bias[j];
          if (act >= 1) s = Math.max(s, 0);
          if (act === 2) s = Math.min(s, 6);
          const o = (bi * m + i) * n + j;
          want[o] = acc ? c0[o] + s : s;
        }
      }
    }
    return [want];
  });
  // One heap holding every operand (the wasm case), viewed through a subarray with its own byteOffset.
  const words = (x: ArrayBufferView) => Math.ceil(x.byteLength / 4);
  const lead = 3;
  const sizes = [a, b.raw, c0, ...(bias ? [bias] : [])].map(words);
  const heap = new Float32Array(lead + sizes.reduce((p, s) => p + s, 0) + 5);
  const view = heap.subarray(lead);
  let off = 0;
  const place = (x: Float32Array | Uint16Array) => {
    new Uint8Array(view.buffer, view.byteOffset + off, x.byteLength).set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    const at = off;
    off += 4 * words(x);
    return at;
  };
  const aOff = place(a), bOff = place(b.raw), cOff = place(c0), biasOff = bias ? place(bias) : 0;
  const got = new Float32Array(view.buffer, view.byteOffset + cOff, batch * m * n);
  const tol = 2e-6 * Math.max(k, 1) * maxAbs(a) * maxAbs(b.exact) + 1e-6 * maxAbs(want);
  for (const t of threads) {
    addon().setThreads(t);
    got.set(c0);
    addon().matmul({
      a: view, aOffset: aOff, b: view, bOffset: bOff, bType: type, c: view, cOffset: cOff, m, n, k, transA: ta, transB: tb, batch, idx,
      bias: bias ? view : null, biasOffset: biasOff, biasLength: bias?.length, activation: act, accumulate: acc,
    });
    assertClose(got, want, tol, `matmul ${JSON.stringify(c)} on ${t} threads`);
  }
}

const MATMUL_CASES: MatmulCase[] = [
  { m: 1, n: 77, k: 300, tb: true }, // GEMV, HF [out, in] weights
  { m: 1, n: 130, k: 65 },
  { m: 3, n: 77, k: 300, ta: true, tb: true },
  { m: 4, n: 70, k: 33, ta: true, bias: 70, act: 1 },
  { m: 37, n: 53, k: 29 },
  { m: 64, n: 300, k: 129, tb: true },
  { m: 53, n: 37, k: 29, ta: true },
  { m: 53, n: 37, k: 29, ta: true, tb: true },
  { m: 41, n: 1100, k: 600, tb: true }, // several k blocks and column strips
  { m: 200, n: 45, k: 300, ta: true }, // rows split over tasks, partial tiles
  { m: 25, n: 33, k: 270, tb: true, bias: 33, act: 2 },
  { m: 25, n: 33, k: 270, bias: 1, act: 1 },
  { m: 25, n: 33, k: 270, tb: true, acc: true }, // residual add
  { m: 25, n: 33, k: 270, tb: true, acc: true, bias: 33, act: 1 }, // C += relu(...)
  { m: 2, n: 33, k: 27, tb: true, acc: true, bias: 1, act: 2 },
  { m: 9, n: 17, k: 0, bias: 17, act: 1 }, // empty k: act(bias)
  { m: 6, n: 9, k: 16, batch: 3 },
  { m: 7, n: 9, k: 16, tb: true, batch: 4, batchA: 2, batchB: 1, idx: [0, 0, 1, 0, 1, 0, 0, 0] }, // broadcasting
  { m: 1, n: 9, k: 16, tb: true, batch: 3, batchA: 1, batchB: 3, idx: [0, 0, 0, 1, 0, 2] },
  { m: 40, n: 90, k: 300, tb: true, type: BF16 },
  { m: 40, n: 90, k: 300, type: BF16 },
  { m: 1, n: 90, k: 300, tb: true, type: BF16 },
  { m: 3, n: 90, k: 300, type: BF16 },
  { m: 40, n: 90, k: 300, tb: true, type: F16 },
  { m: 40, n: 90, k: 300, type: F16, bias: 90 },
  { m: 1, n: 90, k: 300, tb: true, type: F16 },
  { m: 2, n: 90, k: 300, type: F16 },
];

test('matmul equals a float64 reference (shapes, transposes, idx, bias, activation, accumulate, bf16/f16 B)', { skip: NOT_BUILT }, () => {
  const x = addon();
  MATMUL_CASES.forEach((c, i) => checkMatmul(c, 10 * i + 1, [1, 3])); // each float64 reference computed once
  x.setThreads(x.info().procs);
});

/** W [rows, cols] rounded to bf16 (nearest even) as the exact values bf16 products multiply, and x likewise (denormals flushed). */
const bf16Exact = (v: Float32Array, flush: boolean) => Float64Array.from(v, (x) => {
  const h = numberToBf16Even(x);
  return flush && (h & 0x7f80) === 0 ? 0 : bf16ToNumber(h);
});

test('packBf16 lays W out as the panels of the layout definition (unpackBf16Panels), rounding float32/float16 to nearest even', { skip: NOT_BUILT }, () => {
  const x = addon();
  for (const [rows, cols] of [[1, 2], [33, 70], [64, 64], [70, 33]]) {
    const v = values(rows * cols, rows + cols, 3);
    for (const type of [F32, BF16, F16] as ElementType[]) {
      const w = typed(v, type);
      const out = new Int32Array(bf16PackedWords(rows, cols));
      x.packBf16({ src: w.raw, type, rows, cols, out });
      const want = Float64Array.from(w.exact, (e) => bf16ToNumber(numberToBf16Even(e)));
      assertClose(unpackBf16Panels(out, rows, cols), want, 0, `packBf16 [${rows}, ${cols}] type ${type}`);
      // past the matrix, panels hold zeros (the products read them)
      const pairs = Math.ceil(cols / 32) * 16;
      if (rows % 32) assert.equal(out[(Math.ceil(rows / 32) - 1) * pairs * 32 + pairs * 32 - 1], 0, 'padding column');
    }
  }
  assert.throws(() => x.packBf16({ src: new Float32Array(5), type: F32, rows: 2, cols: 3, out: new Int32Array(bf16PackedWords(2, 3)) }), /src .* outside/);
  assert.throws(() => x.packBf16({ src: new Float32Array(6), type: F32, rows: 2, cols: 3, out: new Int32Array(10) }), /out .* outside/);
});

interface LinearCase { m: number; n: number; k: number; bias?: boolean; acc?: boolean }

/**
 * linear on a BF16P weight against float64 sums of the bf16-rounded operands: the bf16 products'
 * semantics (products exact, float32 accumulation: the tolerance is float32 summation's, k·2⁻²³
 * relative to the sum of |products|), on whichever kernel this process runs (avx512bf16, AMX or
 * emulated on tiles, or float32 FMAs).
 */
function checkBf16Linear(c: LinearCase, seed: number, threads: readonly number[]): void {
  const { m, n, k } = c;
  const xv = values(m * k, seed, 2), wv = values(n * k, seed + 1), bias = c.bias ? values(n, seed + 2, 3) : null;
  const y0 = values(m * n, seed + 3);
  const panels = new Int32Array(bf16PackedWords(n, k));
  addon().packBf16({ src: wv, type: F32, rows: n, cols: k, out: panels });
  const [want, [scale]] = reference(`bf16 linear ${JSON.stringify(c)} ${seed}`, () => {
    const xe = bf16Exact(xv, true), we = bf16Exact(wv, false);
    const want = new Float64Array(m * n);
    let scale = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, abs = 0;
        for (let p = 0; p < k; p++) {
          s += xe[i * k + p] * we[j * k + p];
          abs += Math.abs(xe[i * k + p] * we[j * k + p]);
        }
        want[i * n + j] = s + (bias ? bias[j] : 0) + (c.acc ? y0[i * n + j] : 0);
        scale = Math.max(scale, abs);
      }
    }
    return [want, Float64Array.of(scale)];
  });
  for (const t of threads) {
    addon().setThreads(t);
    const y = Float32Array.from(y0);
    addon().linear({ x: xv, m, weight: { format: BF16P, rows: n, cols: k, data: panels }, bias, y, accumulate: !!c.acc });
    assertClose(y, want, (k + 4) * 2 ** -23 * (scale + 4), `bf16 linear ${JSON.stringify(c)} on ${addon().info().bf16Kernel}, ${t} threads`);
  }
}

const LINEAR_CASES: LinearCase[] = [
  { m: 1, n: 33, k: 64 }, // decoding: one row
  { m: 3, n: 70, k: 100, bias: true },
  { m: 13, n: 64, k: 31 }, // odd k: a half-filled last pair
  { m: 40, n: 90, k: 300, acc: true }, // residual add
  { m: 45, n: 257, k: 2100, bias: true }, // several k blocks (2048 + 52), a partial panel, rows over AMX's 32-row blocks
];

test('linear on bf16 panels equals bf16-rounded operands summed in float64 (rows 1..45, odd k, k blocks, bias, accumulate)', { skip: NOT_BUILT }, () => {
  const x = addon();
  LINEAR_CASES.forEach((c, i) => checkBf16Linear(c, 50 + 7 * i, [1, 2])); // each float64 reference computed once
  x.setThreads(x.info().procs);
});

test('linear on Hugging Face float32/bf16/f16 weights is matmul with B transposed; a weight descriptor is checked', { skip: NOT_BUILT }, () => {
  const x = addon();
  const m = 5, n = 7, k = 40, xv = values(m * k, 3), wv = values(n * k, 4);
  for (const type of [F32, BF16, F16] as ElementType[]) {
    const w = typed(wv, type), y = new Float32Array(m * n), c = new Float32Array(m * n);
    x.linear({ x: xv, m, weight: { format: type, rows: n, cols: k, data: w.raw }, y });
    x.matmul({ a: xv, b: w.raw, bType: type, c, m, n, k, transB: true });
    assert.deepEqual(y, c, `format ${type}`);
  }
  const y = new Float32Array(m * n);
  assert.throws(() => x.linear({ x: xv, m, weight: { format: F32, rows: n, cols: k, data: new Float32Array(n * k - 1) }, y }), /mka_native\.linear: weight: data .* outside/);
  assert.throws(() => x.linear({ x: xv, m, weight: { format: 9 as never, rows: n, cols: k, data: wv }, y }), /weight: format = 9/);
  assert.throws(() => x.linear({ x: xv, m, weight: { format: BF16P, rows: n, cols: k, data: new Int32Array(bf16PackedWords(n, k) - 1) }, y }), /data .* outside/);
  assert.throws(() => x.linear({ x: xv, m: m + 1, weight: { format: F32, rows: n, cols: k, data: wv }, y }), /x .* outside/);
  assert.throws(() => x.linear({ x: xv, m, weight: undefined as never, y }), /weight must be a weight descriptor/);
});

/**
 * edges: row 0's first block of x zero and its second 1e-6 small (a subnormal half scale), row 1's first 1e-3 small.
 * extremes: every quant at an end of its range (weight rows alternately the lowest and the highest: -128 or 127,
 * 0 or 255, 0 or 15) and every activation ±127 (x rows alternately all 1 and all -1), where a kernel that sums
 * products in int16 would saturate first.
 */
interface QuantCase { m: number; n: number; k: number; bits: 8 | 4; group: number; symmetric: boolean; perToken?: boolean; bias?: boolean; acc?: boolean; edges?: boolean; extremes?: boolean }

/** A contract 1 weight [n, k]: random quants packed row by row in blocks of 32 (zero past k), its scales and mins, and its values. */
function quantWeight(c: QuantCase, seed: number) {
  const { n, k, bits, group, symmetric } = c;
  const kb = Math.ceil(k / 32), groups = Math.ceil(k / group), rowBytes = kb * (bits === 8 ? 32 : 16);
  const data = new Uint8Array(n * rowBytes), scales = values(n * groups, seed, 0.05), mins = symmetric ? null : values(n * groups, seed + 1, 0.5);
  const w = new Float64Array(n * k);
  let x = seed | 1;
  const rand = (hi: number) => ((x = (Math.imul(x, 1103515245) + 12345) | 0), (x >>> 8) % hi);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < k; i++) {
      const [lo, hi] = bits === 8 ? (symmetric ? [-128, 127] : [0, 255]) : [0, 15];
      const q = c.extremes ? (j % 2 ? hi : lo) : bits === 8 ? (symmetric ? rand(255) - 127 : rand(256)) : rand(16);
      const g = j * groups + Math.floor(i / group), s = scales[g];
      w[j * k + i] = symmetric ? s * (bits === 8 ? q : q - 8) : s * q + mins![g];
      const b = Math.floor(i / 32), v = i % 32, base = j * rowBytes;
      if (bits === 8) data[base + b * 32 + v] = q & 0xff;
      else data[base + b * 16 + (v & 15)] |= v < 16 ? q : q << 4;
    }
  }
  return { data, scales, mins, w };
}

/**
 * x quantized as the integer products do it, which is llama.cpp's x86 Q8_0/Q8_1: blocks of 32 (or the
 * whole row, per token) with q = round-half-even(x·(127/max|x|)) in float32; per block the product uses
 * d = max|x|/127 rounded to a half (per token: float32), and its Σq (`sum`) with `sHalf` = half(d·Σq),
 * Q8_1's s, which weights with mins multiply instead of d·Σq.
 */
function quantizeActivations(x: Float32Array, m: number, k: number, perToken: boolean) {
  const kb = Math.ceil(k / 32), q = new Float64Array(m * kb * 32), d = new Float64Array(m * kb), dUsed = new Float64Array(m * kb);
  const sum = new Float64Array(m * kb), sHalf = new Float64Array(m * kb);
  const even = (v: number) => { const r = Math.round(v); return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r; };
  for (let i = 0; i < m; i++) {
    let rowMax = 0;
    for (let p = 0; p < k; p++) rowMax = Math.max(rowMax, Math.abs(x[i * k + p]));
    for (let b = 0; b < kb; b++) {
      let amax = rowMax;
      if (!perToken) {
        amax = 0;
        for (let p = b * 32; p < Math.min(k, b * 32 + 32); p++) amax = Math.max(amax, Math.abs(x[i * k + p]));
      }
      const o = i * kb + b, db = Math.fround(amax / 127), id = amax > 0 ? Math.fround(127 / amax) : 0;
      d[o] = db;
      dUsed[o] = perToken ? db : roundHalf(db);
      for (let p = b * 32; p < Math.min(k, b * 32 + 32); p++) {
        q[i * kb * 32 + p] = Math.max(-127, Math.min(127, even(Math.fround(x[i * k + p] * id))));
        sum[o] += q[i * kb * 32 + p];
      }
      sHalf[o] = perToken ? db * sum[o] : roundHalf(Math.fround(db * sum[o]));
    }
  }
  return { q, d, dUsed, sum, sHalf };
}

/**
 * linear on a packed integer weight against float64 references from the weight's values: (1) with the
 * activations quantized as the kernels do (llama.cpp's Q8_0/Q8_1, quantizeActivations), within float32
 * summation error (2⁻²⁰ of the sum of |terms|); (2) with float activations (what the weight-only
 * methods mean), within the bound activation quantization puts on it: Σ over blocks of (d/2)·Σ|w| per
 * output, plus what rounding d (and Q8_1's s) to a half moves each block.
 */
function checkQuantLinear(c: QuantCase, seed: number, threads: readonly number[]): void {
  const { m, n, k } = c;
  const { data, scales, mins, w } = quantWeight(c, seed);
  const xv = values(m * k, seed + 2, 2), bias = c.bias ? values(n, seed + 3) : null, y0 = values(m * n, seed + 4);
  if (c.extremes) for (let i = 0; i < m; i++) xv.fill(i % 2 ? -1 : 1, i * k, (i + 1) * k);
  if (c.edges) {
    xv.fill(0, 0, 32);
    for (let p = 32; p < 64; p++) xv[p] *= 1e-6;
    for (let p = k; p < k + 32; p++) xv[p] *= 1e-3;
  }
  const [exact, float, tolExact, tolFloat] = reference(`quant linear ${JSON.stringify(c)} ${seed}`, () => {
    const kb = Math.ceil(k / 32), groups = Math.ceil(k / c.group);
    const { q, d, dUsed, sum, sHalf } = quantizeActivations(xv, m, k, !!c.perToken);
    const exact = new Float64Array(m * n), float = new Float64Array(m * n), tolExact = new Float64Array(m * n), tolFloat = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let e = 0, f = 0, abs = 0, bound = 0;
        for (let b = 0; b < kb; b++) {
          let dot = 0, wabs = 0;
          for (let p = b * 32; p < Math.min(k, b * 32 + 32); p++) {
            const wv = w[j * k + p];
            dot += q[i * kb * 32 + p] * wv;
            f += xv[i * k + p] * wv;
            wabs += Math.abs(wv);
          }
          const o = i * kb + b, min = mins ? mins[j * groups + Math.floor((b * 32) / c.group)] : 0;
          // Σ qx·w = sw·Σ qx·qw + min·Σqx: the min's term takes Q8_1's s in place of d·Σqx
          const block = dUsed[o] * dot + min * (sHalf[o] - dUsed[o] * sum[o]);
          e += block;
          abs += Math.abs(dUsed[o] * dot) + dUsed[o] * 127 * wabs + Math.abs(min * sHalf[o]);
          bound += (d[o] / 2) * wabs + Math.abs(block - d[o] * dot);
        }
        const add = (bias ? bias[j] : 0) + (c.acc ? y0[i * n + j] : 0);
        exact[i * n + j] = e + add;
        float[i * n + j] = f + add;
        tolExact[i * n + j] = 2 ** -20 * (abs + Math.abs(add));
        tolFloat[i * n + j] = bound + tolExact[i * n + j];
      }
    }
    return [exact, float, tolExact, tolFloat];
  });
  for (const t of threads) {
    addon().setThreads(t);
    const y = Float32Array.from(y0);
    addon().linear({
      x: xv, m, bias, y, accumulate: !!c.acc,
      weight: { format: c.bits === 8 ? Q8 : Q4, rows: n, cols: k, data, scales, mins, group: c.group, perToken: !!c.perToken },
    });
    const what = `${addon().info().int8Kernel} Q${c.bits} ${JSON.stringify(c)} on ${t} threads`;
    for (let o = 0; o < m * n; o++) {
      assert.ok(Math.abs(y[o] - exact[o]) <= tolExact[o], `${what}: output ${o} = ${y[o]}, want ${exact[o]} ± ${tolExact[o]}`);
      assert.ok(Math.abs(y[o] - float[o]) <= tolFloat[o], `${what}: output ${o} is ${Math.abs(y[o] - float[o])} from float activations' (bound ${tolFloat[o]})`);
    }
  }
}

const QUANT_CASES: QuantCase[] = [
  { m: 2, n: 37, k: 64, bits: 4, group: 32, symmetric: true, edges: true }, // decoding: row-dot kernel
  { m: 3, n: 40, k: 96, bits: 8, group: 32, symmetric: true, bias: true },
  { m: 2, n: 33, k: 176, bits: 4, group: 176, symmetric: false }, // per channel, k not a multiple of 32 (the demo's ffn)
  { m: 7, n: 70, k: 128, bits: 4, group: 64, symmetric: true, acc: true }, // packed GEMM, partial tiles
  { m: 13, n: 45, k: 100, bits: 8, group: 100, symmetric: false, bias: true },
  { m: 40, n: 90, k: 256, bits: 8, group: 256, symmetric: true, perToken: true }, // W8A8 (SmoothQuant)
  { m: 20, n: 33, k: 2144, bits: 4, group: 128, symmetric: false, edges: true }, // several k blocks of the packed GEMM (64 blocks each)
  { m: 8, n: 40, k: 96, bits: 8, group: 32, symmetric: true, edges: true },
  { m: 9, n: 64, k: 160, bits: 8, group: 32, symmetric: false, perToken: true, acc: true, bias: true },
  { m: 7, n: 20, k: 96, bits: 8, group: 32, symmetric: true, extremes: true }, // packed GEMM at the ends of the ranges
  { m: 7, n: 20, k: 96, bits: 8, group: 32, symmetric: false, extremes: true },
  { m: 7, n: 20, k: 96, bits: 4, group: 32, symmetric: true, extremes: true },
  { m: 2, n: 20, k: 96, bits: 8, group: 32, symmetric: true, extremes: true }, // the row-dot kernel at the same
  { m: 2, n: 20, k: 96, bits: 4, group: 32, symmetric: false, extremes: true },
];

test('linear on packed integer weights (contract 1: Q8/Q4, symmetric or with mins, groups, per-token W8A8) equals float64 of the dequantized weights', { skip: NOT_BUILT }, () => {
  const x = addon();
  QUANT_CASES.forEach((c, i) => checkQuantLinear(c, 300 + 11 * i, [1, 2])); // each float64 reference computed once
  x.setThreads(x.info().procs);
  // embedding rows gathered from a packed table are its dequantized rows
  const c: QuantCase = { m: 1, n: 40, k: 100, bits: 4, group: 32, symmetric: false };
  const { data, scales, mins, w } = quantWeight(c, 7);
  const ids = Int32Array.from([5, 0, 39]), out = new Float32Array(3 * 100);
  x.gatherRows({ table: { format: Q4, rows: 40, cols: 100, data, scales, mins, group: 32 }, ids, out });
  assertClose(out, Array.from(ids).flatMap((id) => Array.from(w.subarray(id * 100, id * 100 + 100))), 1e-6, 'gatherRows Q4');
  assert.throws(() => x.linear({ x: new Float32Array(64), m: 1, y: new Float32Array(2), weight: { format: Q8, rows: 2, cols: 64, data: new Uint8Array(128), scales: new Float32Array(2), group: 48 } }), /group = 48 must be a multiple of 32 or the whole row/);
  assert.throws(() => x.linear({ x: new Float32Array(64), m: 1, y: new Float32Array(2), weight: { format: Q4, rows: 2, cols: 64, data: new Uint8Array(63), scales: new Float32Array(4), group: 32 } }), /weight: data .* outside/);
  assert.throws(() => x.linear({ x: new Float32Array(64), m: 1, y: new Float32Array(2), weight: { format: Q4, rows: 2, cols: 64, data: new Uint8Array(64), scales: new Float32Array(3), group: 32 } }), /weight: scales .* outside/);
});

interface AttentionCase { B: number; T: number; S: number; nH: number; nKV: number; hd: number; kvB?: number; window?: number }

function checkAttention(c: AttentionCase, seed: number): void {
  const { B, T, S, nH, nKV, hd, window = 0 } = c;
  const kvB = c.kvB ?? B;
  const q = values(B * T * nH * hd, seed, 2), k = values(kvB * nKV * S * hd, seed + 1, 2), v = values(kvB * nKV * S * hd, seed + 2);
  const scale = 1 / Math.sqrt(hd);
  const [want] = reference(`attention ${JSON.stringify(c)} ${seed}`, () => {
    const want = new Float64Array(B * T * nH * hd);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < nH; h++) {
        const kvh = Math.floor(h / (nH / nKV)), kb = kvB === 1 ? 0 : b;
        const kv = (s: number) => ((kb * nKV + kvh) * S + s) * hd;
        for (let t = 0; t < T; t++) {
          const pos = S - T + t, qo = ((b * T + t) * nH + h) * hd;
          const seen: number[] = [];
          for (let s = 0; s <= pos; s++) if (window <= 0 || s > pos - window) seen.push(s);
          const scores = seen.map((s) => { let d = 0; for (let i = 0; i < hd; i++) d += q[qo + i] * k[kv(s) + i]; return d * scale; });
          const top = Math.max(...scores), w = scores.map((x) => Math.exp(x - top)), sum = w.reduce((p, x) => p + x, 0);
          for (let i = 0; i < hd; i++) want[qo + i] = seen.reduce((p, s, j) => p + (w[j] / sum) * v[kv(s) + i], 0);
        }
      }
    }
    return [want];
  });
  const out = new Float32Array(want.length + 2);
  addon().attention({ q, k, v, out, outOffset: 8, B, T, S, nH, nKV, hd, kvB, window, scale });
  assertClose(out.subarray(2), want, 2e-6 * maxAbs(v) * 4, `attention ${JSON.stringify(c)}`);
  assert.equal(out[0], 0, 'nothing written before out');
}

test('attention equals a float64 softmax(QKᵀ)V (GQA, windows, kvB = 1, T < S, tiles)', { skip: NOT_BUILT }, () => {
  const cases: AttentionCase[] = [
    { B: 2, T: 5, S: 5, nH: 4, nKV: 2, hd: 16 },
    { B: 2, T: 3, S: 11, nH: 4, nKV: 1, hd: 24 }, // cached prefix
    { B: 1, T: 1, S: 150, nH: 2, nKV: 2, hd: 8 }, // decode step over several key tiles
    { B: 1, T: 70, S: 70, nH: 2, nKV: 1, hd: 32 }, // several query and key tiles
    { B: 3, T: 4, S: 9, nH: 2, nKV: 2, hd: 16, kvB: 1 }, // one cache for every row
    { B: 1, T: 100, S: 130, nH: 3, nKV: 1, hd: 8, window: 7 }, // sliding window
    { B: 2, T: 2, S: 6, nH: 6, nKV: 3, hd: 10, window: 1 },
  ];
  for (const threads of [1, 2]) {
    addon().setThreads(threads);
    cases.forEach((c, i) => checkAttention(c, 100 + 7 * i));
  }
});

test('attention with bf16 products equals a float64 softmax(QKᵀ)V of bf16-rounded q·scale, k and v, within P\'s bf16 rounding (2^-8 of max |v|)', { skip: NOT_BUILT }, () => {
  const cases: AttentionCase[] = [
    { B: 1, T: 70, S: 70, nH: 4, nKV: 1, hd: 64 }, // the heads of a kv head stacked: 4 x 70 rows, two key tiles
    { B: 2, T: 5, S: 9, nH: 6, nKV: 2, hd: 40 }, // cached prefix, a head size of 40 (padded to 64 in panels)
    { B: 1, T: 100, S: 130, nH: 2, nKV: 2, hd: 16, window: 7 }, // sliding window
    { B: 3, T: 4, S: 9, nH: 2, nKV: 2, hd: 32, kvB: 1 },
  ];
  const round = (x: number) => bf16ToNumber(numberToBf16Even(x));
  for (const threads of [1, 2]) {
    addon().setThreads(threads);
    cases.forEach((c, n) => {
      const { B, T, S, nH, nKV, hd, window = 0 } = c;
      const kvB = c.kvB ?? B, scale = 1 / Math.sqrt(hd), seed = 500 + 7 * n;
      const q = values(B * T * nH * hd, seed, 2), k = values(kvB * nKV * S * hd, seed + 1, 2), v = values(kvB * nKV * S * hd, seed + 2);
      const [want] = reference(`bf16 attention ${JSON.stringify(c)} ${seed}`, () => {
        const want = new Float64Array(B * T * nH * hd);
        for (let b = 0; b < B; b++) {
          for (let h = 0; h < nH; h++) {
            const kvh = Math.floor(h / (nH / nKV)), kb = kvB === 1 ? 0 : b, kv = (s: number) => ((kb * nKV + kvh) * S + s) * hd;
            for (let t = 0; t < T; t++) {
              const pos = S - T + t, qo = ((b * T + t) * nH + h) * hd;
              const seen: number[] = [];
              for (let s = 0; s <= pos; s++) if (window <= 0 || s > pos - window) seen.push(s);
              const sc = seen.map((s) => { let d = 0; for (let i = 0; i < hd; i++) d += round(Math.fround(q[qo + i] * scale)) * round(k[kv(s) + i]); return d; });
              const top = Math.max(...sc), w = sc.map((x) => Math.exp(x - top)), sum = w.reduce((p, x) => p + x, 0);
              for (let i = 0; i < hd; i++) want[qo + i] = seen.reduce((p, s, j) => p + (w[j] / sum) * round(v[kv(s) + i]), 0);
            }
          }
        }
        return [want];
      });
      const out = new Float32Array(want.length), f32 = new Float32Array(want.length);
      addon().attention({ q, k, v, out, B, T, S, nH, nKV, hd, kvB, window, scale, bf16: true });
      addon().attention({ q, k, v, out: f32, B, T, S, nH, nKV, hd, kvB, window, scale });
      assertClose(out, want, 2 ** -8 * maxAbs(v) + 1e-5, `bf16 attention ${JSON.stringify(c)} on ${addon().info().bf16Kernel}`);
      assert.ok(maxAbs(Float32Array.from(out, (x, i) => x - f32[i])) > 0, 'the bf16 products ran (the float32 kernel gives other bits)');
    });
  }
  addon().setThreads(addon().info().procs);
});

test('rmsnorm, rope, siluMul, gatherRows and toFloat32 equal float64 references', { skip: NOT_BUILT }, () => {
  const x = addon();
  // rmsnorm with float32 / bf16 / f16 weights
  const rows = 5, n = 37, eps = 1e-5, xs = values(rows * n, 3, 4), wv = values(n, 4, 2);
  for (const type of [F32, BF16, F16] as ElementType[]) {
    const w = typed(wv, type), out = new Float32Array(rows * n);
    x.rmsnorm({ x: xs, w: w.raw, wType: type, out, rows, n, eps });
    const want = new Float64Array(rows * n);
    for (let r = 0; r < rows; r++) {
      let ms = 0;
      for (let i = 0; i < n; i++) ms += xs[r * n + i] ** 2;
      const inv = 1 / Math.sqrt(ms / n + eps);
      for (let i = 0; i < n; i++) want[r * n + i] = xs[r * n + i] * inv * w.exact[i];
    }
    assertClose(out, want, 1e-5 * maxAbs(want), `rmsnorm type ${type}`);
  }
  // rope, in place, on a subarray (its own byteOffset) at a byte offset
  const B = 2, T = 3, heads = 2, hd = 8, cos = values(T * hd, 5), sin = values(T * hd, 6);
  const xr = values(B * T * heads * hd, 7), heap = new Float32Array(xr.length + 6), view = heap.subarray(2);
  view.set(xr, 1);
  x.rope({ x: view, xOffset: 4, cos, sin, B, T, heads, hd });
  const wantR = new Float64Array(xr.length);
  for (let r = 0; r < B * T * heads; r++) {
    const t = Math.floor(r / heads) % T;
    for (let i = 0; i < hd; i++) {
      const rot = i < hd / 2 ? -xr[r * hd + i + hd / 2] : xr[r * hd + i - hd / 2];
      wantR[r * hd + i] = xr[r * hd + i] * cos[t * hd + i] + rot * sin[t * hd + i];
    }
  }
  assertClose(view.subarray(1, 1 + xr.length), wantR, 1e-6, 'rope');
  assert.equal(heap[2], 0);
  // siluMul over a wide range (large |gate| included)
  const g = values(1000, 8, 30), u = values(1000, 9), out = new Float32Array(1000);
  x.siluMul({ gate: g, up: u, out, n: 1000 });
  assertClose(out, Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]), 1e-6 * 30, 'siluMul');
  // gatherRows from float32, bf16, f16 and bf16-panel tables (a panel's row is a strided column of words)
  const vocab = 40, cols = 7, ids = Int32Array.from([3, 0, 39, 33, 3]);
  for (const type of [F32, BF16, F16] as ElementType[]) {
    const table = typed(values(vocab * cols, 10, 5), type), rowsOut = new Float32Array(ids.length * cols);
    x.gatherRows({ table: { format: type, rows: vocab, cols, data: table.raw }, ids, out: rowsOut });
    const want = Array.from(ids).flatMap((id) => Array.from(table.exact.subarray(id * cols, (id + 1) * cols)));
    assertClose(rowsOut, want, 0, `gatherRows type ${type}`);
  }
  const tv = values(vocab * cols, 12, 5), panels = new Int32Array(bf16PackedWords(vocab, cols)), rowsOut = new Float32Array(ids.length * cols);
  x.packBf16({ src: tv, type: F32, rows: vocab, cols, out: panels });
  x.gatherRows({ table: { format: BF16P, rows: vocab, cols, data: panels }, ids, out: rowsOut });
  const rounded = bf16Exact(tv, false);
  assertClose(rowsOut, Array.from(ids).flatMap((id) => Array.from(rounded.subarray(id * cols, (id + 1) * cols))), 0, 'gatherRows bf16 panels');
  // toFloat32: exact widening, f16 subnormals, infinities, NaN and -0 included; 16-bit words packed in an Int32Array
  const halves = [0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x1234, 0x8001, 0x5555];
  const packed = new Int32Array(8);
  new Uint16Array(packed.buffer).set(halves);
  const wide = new Float32Array(halves.length);
  x.toFloat32({ src: packed, type: F16, out: wide, n: halves.length });
  halves.forEach((h, i) => assert.ok(Object.is(wide[i], Math.fround(halfToNumber(h))) || (Number.isNaN(wide[i]) && Number.isNaN(halfToNumber(h))), `f16 ${h.toString(16)} -> ${wide[i]}`));
  const bf = [0x0000, 0x8000, 0x3f80, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0xc2f7];
  const wideB = new Float32Array(bf.length + 16), src = new Uint16Array(bf.length + 16);
  src.set(bf);
  x.toFloat32({ src, type: BF16, out: wideB, n: src.length }); // long enough for the vector loop
  bf.forEach((h, i) => assert.ok(Object.is(wideB[i], bf16ToNumber(h)) || (Number.isNaN(wideB[i]) && (h & 0x7f) !== 0), `bf16 ${h.toString(16)}`));
  const many = Uint16Array.from(values(1000, 11, 100), numberToHalf), manyOut = new Float32Array(1004);
  x.toFloat32({ src: new DataView(many.buffer), type: F16, out: new DataView(manyOut.buffer, 8), outOffset: 8, n: 1000 }); // DataViews, offsets on offsets
  assertClose(manyOut.subarray(4), Array.from(many, halfToNumber), 0, 'f16 vector widening');
  assert.deepEqual([...manyOut.subarray(0, 4)], [0, 0, 0, 0]);
});

test('operands outside their arrays, misaligned or malformed throw an Error instead of crashing', { skip: NOT_BUILT }, () => {
  const x = addon();
  const a = new Float32Array(12), b = new Float32Array(12), c = new Float32Array(9);
  const mm = (over: Partial<{ aOff: number; cLen: number; bType: number; m: number; idx: Int32Array | null; batch: number; biasLen: number }>) => () =>
    x.matmul({
      a, aOffset: over.aOff ?? 0, b, bType: (over.bType ?? 0) as ElementType, c: over.cLen ? new Float32Array(over.cLen) : c, m: over.m ?? 3, n: 3, k: 4,
      batch: over.batch ?? 1, idx: over.idx ?? null, bias: over.biasLen ? new Float32Array(3) : null, biasLength: over.biasLen,
    });
  assert.doesNotThrow(mm({}));
  assert.throws(mm({ aOff: 4 }), /mka_native\.matmul: a .* outside its 48-byte array/);
  assert.throws(mm({ aOff: 2 }), /a at byte offset 2 is not 4-byte aligned/);
  assert.throws(mm({ aOff: -4 }), /aOffset = -4 is not an integer/);
  assert.throws(mm({ aOff: 1.5 }), /not an integer/);
  assert.throws(mm({ cLen: 8 }), /c .* outside/);
  assert.throws(mm({ m: 4 }), /outside/);
  assert.throws(mm({ bType: 3 }), /bType = 3/);
  assert.throws(mm({ idx: Int32Array.from([0, 1]) }), /b .* outside/); // B index 1 past a single B
  assert.throws(mm({ idx: Int32Array.from([-1, 0]) }), /negative batch index/);
  assert.throws(mm({ idx: Int32Array.from([0, 0]), batch: 2 }), /idx must be an Int32Array of 2\*batch/);
  assert.throws(mm({ biasLen: 2 }), /biasLength must be 1 or n/);
  // a typed array's own byteOffset counts: the same 12 floats seen from element 4 have 8 left
  assert.throws(() => x.matmul({ a: a.subarray(4), b, c, m: 3, n: 3, k: 4 }), /outside its 32-byte array/);
  assert.throws(() => x.matmul({ a, b, c, n: 3, k: 4 } as never), /m is required/);
  assert.throws(() => x.matmul(3 as never), /expects a descriptor object/);
  assert.throws(() => x.toFloat32({ src: new Uint8Array(7), srcOffset: 1, type: BF16, out: new Float32Array(3), n: 3 } as never), /not 2-byte aligned/);
  assert.throws(() => x.gatherRows({ table: { format: F32, rows: 3, cols: 2, data: new Float32Array(6) }, ids: Int32Array.from([0, 3]), out: new Float32Array(4) }), /ids\[1\] = 3 is outside the table's 3 rows/);
  const att = { q: a, k: a, v: a, out: a, B: 1, T: 1, S: 1, nH: 3, nKV: 2, hd: 4, scale: 0.5 };
  assert.throws(() => x.attention(att), /nH must be a multiple of nKV/);
  assert.throws(() => x.attention({ ...att, nH: 1, nKV: 1, T: 2 }), /T must be <= S/);
  assert.throws(() => x.attention({ ...att, nH: 1, nKV: 1, S: 4 }), /k .* outside/);
  assert.throws(() => x.rmsnorm({ x: a, w: new Uint16Array(3), wType: BF16, out: a, rows: 3, n: 4, eps: 1e-5 }), /w .* outside/);
  assert.throws(() => x.siluMul({ gate: a, up: a, out: c, n: 12 }), /out .* outside/);
  assert.throws(() => x.setThreads(0), /threads = 0/);
  assert.throws(() => x.setThreads(4 * x.info().procs + 1), /threads/);
  assert.throws(() => x.matmul({ a: null as never, b, c, m: 3, n: 3, k: 4 }), /a is required/);
  assert.throws(() => x.matmul({ a: 'x' as never, b, c, m: 3, n: 3, k: 4 }), /a must be a TypedArray/);
});

/** The MKA_ISA levels, lowest first; this CPU's highest is info().level by default. */
const LEVELS = ['generic', 'avx2', 'avx512', 'vnni', 'bf16', 'amx'] as const;

/**
 * The kernels MKA_ISA=`level` must choose on a CPU with `has`, from the rules stated in docs/backends.md
 * (written here independently of native/cpu.c): the float32 path is the best of avx512/avx2/generic under
 * the cap; integer products take VNNI from level vnni up, else vpmaddwd on the float32 path's ISA; bf16
 * products take AMX at level amx (when the OS grants it), vdpbf16ps from level bf16 up, else float32 FMAs.
 */
function expectedKernels(level: (typeof LEVELS)[number], has: ReturnType<NativeAddon['info']>['cpuHas'], amxGranted: boolean):
  { isa: string; int8Kernel: string; bf16Kernel: string } {
  const at = (l: (typeof LEVELS)[number]) => LEVELS.indexOf(level) >= LEVELS.indexOf(l);
  const isa = at('avx512') && has.avx512 ? 'avx512' : at('avx2') && has.avx2 ? 'avx2' : 'generic';
  const int8Kernel = at('vnni') && has.vnni ? 'vnni' : isa === 'avx512' ? 'avx512bw' : isa;
  const bf16Kernel = at('amx') && has.amx && amxGranted ? 'amx' : at('bf16') && has.bf16 ? 'avx512bf16' : `emulated-${isa}`;
  return { isa, int8Kernel, bf16Kernel };
}

test('kernel choice: each MKA_ISA level takes the kernels its rules name, and the backend profile and setup line follow (BF16 models compute float32 without bf16 products, said once)', { skip: NOT_BUILT }, async () => {
  const info = addon().info();
  if (process.env.MKA_ISA === 'amx-emulated') return; // the AMX reference: the info test checks it
  const level = (process.env.MKA_ISA || 'amx') as (typeof LEVELS)[number];
  const want = expectedKernels(level, info.cpuHas, info.cpuHas.amx && info.amxNote === '');
  assert.deepEqual({ isa: info.isa, int8Kernel: info.int8Kernel, bf16Kernel: info.bf16Kernel }, want, `MKA_ISA=${level} on ${JSON.stringify(info.cpuHas)}`);

  const { initBackend } = await import('../src/runtime/backend.ts');
  const { resolveCompute } = await import('../src/runtime/profile.ts');
  const lines: string[] = [];
  const auto = await initBackend('native', { compute: 'auto', log: (m) => lines.push(m) });
  const hardware = want.bf16Kernel === 'amx' || want.bf16Kernel === 'avx512bf16';
  assert.deepEqual(auto.profile.bf16Products, { kernel: want.bf16Kernel, hardware });
  assert.equal(auto.profile.integerProducts, want.int8Kernel);
  assert.equal(resolveCompute(auto.profile, true), hardware ? 'bfloat16' : 'float32', 'a BF16 model under --compute auto');
  assert.equal(resolveCompute(auto.profile, false), 'float32', 'a float32 model under --compute auto');
  assert.equal(lines.length, 1, 'one setup line');
  const line = lines[0];
  assert.ok(line.includes(`mka_native ${want.isa} (bf16 products: ${want.bf16Kernel}, int8: ${want.int8Kernel}`), line);
  if (level !== 'amx') assert.ok(line.includes(`MKA_ISA=${level}`), `the cap is named: ${line}`);
  if (want.int8Kernel !== 'vnni') assert.ok(line.includes(info.cpuHas.vnni ? 'VNNI capped' : 'no VNNI'), `why the integer products are slower: ${line}`);
  assert.ok(line.includes(hardware ? 'compute auto: bfloat16 for BF16 models' : 'compute auto: float32 (no bf16 products (avx512_bf16 or AMX) in use; BF16 models are widened to float32)'), line);
  lines.length = 0;
  const bf16 = await initBackend('native', { compute: 'bfloat16', log: (m) => lines.push(m) });
  assert.equal(resolveCompute(bf16.profile, false), 'bfloat16', '--compute bfloat16 runs bf16 products on any native level');
  assert.equal(lines[0].includes('slower than --compute float32'), !hardware, `said when bf16 products are float32 FMAs: ${lines[0]}`);
});

test('info describes the kernels in use; MKA_ISA forces each lower level and the emulated AMX kernels, which pass every test above', { skip: NOT_BUILT }, () => {
  const info = addon().info();
  assert.ok(['avx512', 'avx2', 'generic'].includes(info.isa));
  assert.ok(info.procs >= 1 && info.threads >= 1 && typeof info.cpu === 'string' && info.cpu.length > 0);
  assert.match(info.bf16Kernel, /^(amx|amx-emulated|avx512bf16|emulated-(generic|avx2|avx512))$/);
  assert.match(info.int8Kernel, /^(vnni|avx512bw|avx2|generic)$/);
  const forced = process.env.MKA_ISA;
  if (forced === 'amx-emulated') {
    assert.equal(info.bf16Kernel, 'amx-emulated');
    return;
  }
  if (forced) {
    assert.equal(info.level, forced);
    const cap = LEVELS.indexOf(forced as (typeof LEVELS)[number]);
    assert.ok(LEVELS.indexOf(info.isa) <= cap, `MKA_ISA=${forced} gave the ${info.isa} float32 path`);
    if (cap < LEVELS.indexOf('bf16')) assert.equal(info.bf16Kernel, `emulated-${info.isa}`);
    if (cap < LEVELS.indexOf('vnni')) assert.notEqual(info.int8Kernel, 'vnni');
    return; // a child run: the parent covers the other paths
  }
  // every level this CPU has below its best, each in a child (MKA_ISA is read at load), and the AMX reference;
  // the children take this run's float64 references
  const refDir = scratchDir('native-refs');
  const refs = join(refDir, 'references.json');
  writeReferences(refs);
  const best = Math.max(LEVELS.indexOf(info.isa), info.cpuHas.vnni ? 3 : 0, info.cpuHas.bf16 ? 4 : 0, info.cpuHas.amx && info.bf16Kernel === 'amx' ? 5 : 0);
  for (const level of [...LEVELS.slice(0, best), 'amx-emulated']) {
    if ((level === 'vnni' && !info.cpuHas.vnni) || (level === 'bf16' && !info.cpuHas.bf16)) continue;
    // the file run as a script (its tests run in that one process, no `--test` runner process beside it),
    // without NODE_TEST_CONTEXT, which would make it report to this run instead of printing its dots
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test-reporter=dot', import.meta.filename], {
      env: { ...env, MKA_ISA: level, MKA_TEST_REFERENCES: refs }, encoding: 'utf8',
    });
    assert.equal(r.status, 0, `MKA_ISA=${level}:\n${r.stdout}\n${r.stderr}`);
    const tests = (readFileSync(import.meta.filename, 'utf8').match(/^test\(/gm) ?? []).length;
    assert.equal((r.stdout.match(/\./g) ?? []).length, tests, `MKA_ISA=${level} ran every test of the file:\n${r.stdout}`);
  }
  rmSync(refDir, { recursive: true, force: true });
  const bad = spawnSync(process.execPath, ['--import', 'tsx', '-e', `import('${import.meta.dirname}/../src/runtime/native-addon.ts').then((m) => console.log(m.loadNativeAddon().reason))`], {
    env: { ...process.env, MKA_ISA: 'sse9' }, encoding: 'utf8',
  });
  assert.match(bad.stdout, /native addon failed to load \(MKA_ISA=sse9 is not one of generic, avx2, avx512, vnni, bf16, amx, amx-emulated\)/);
});
