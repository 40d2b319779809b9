/**
 * Integer products against bf16 products on the same shapes, in the native kernels:
 *   npm run bench -- int8 [--shapes 512x4096x4096,512x14336x4096,512x4096x14336,1x14336x4096] [--reps 3] [--threads N]
 * For each shape m x n x k (y [m, n] = x [m, k]·Wᵀ): GFLOP/s wall and per CPU-second of W in bf16
 * panels (the bf16 products: vdpbf16ps or AMX, emulated in float32 without them), of W as a Hugging Face
 * BF16 tensor widened per tile into float32 FMAs ("bf16 f32": what a BF16 model computes with where the
 * bf16 products are emulated), and of contract 1's packed weights (q8 and q4, symmetric group 32, and q8
 * per channel with per-token activations as SmoothQuant's W8A8), the weight bytes and each format's
 * speed against the faster of the two bf16 ways, with the kernels in use and the machine load. The default shapes are the
 * 32-layer Llama-3-8B's projections at a 512-token prefill and one decoding row. `timeProducts` is
 * the function other benchmarks (`bench quant`) call.
 */
import yargs from 'yargs';
import { availableParallelism, loadavg } from 'node:os';
import { BF16, BF16P, F32, Q4, Q8, bf16PackedWords, loadNativeAddon, type NativeAddon, type WeightDesc } from '../../src/runtime/native-addon.ts';

/** One timed product: best wall GFLOP/s, GFLOP per CPU-second, and the bytes of its weight. */
export interface ProductTiming { format: string; wall: number; cpu: number; bytes: number }

function values(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0, x = seed | 1; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    out[i] = ((x >>> 8) / 2 ** 23 - 1) * scale;
  }
  return out;
}

/** Random weights of W [n, k] in each timed format (quants, scales: any values time the same). */
function weights(n: number, k: number): { name: string; desc: WeightDesc }[] {
  const panels = new Int32Array(bf16PackedWords(n, k));
  // pack from float32 one block of rows at a time, so a 14336 x 4096 weight never exists as float32 whole
  const rows = 1024;
  const part = new Int32Array(bf16PackedWords(rows, k));
  const addon = loadNativeAddon().addon!;
  for (let r0 = 0; r0 < n; r0 += rows) {
    const r = Math.min(rows, n - r0);
    addon.packBf16({ src: values(r * k, r0 + 1, 0.02), type: F32, rows: r, cols: k, out: part });
    panels.set(part.subarray(0, bf16PackedWords(r, k)), bf16PackedWords(r0, k));
  }
  const kb = Math.ceil(k / 32);
  const bytes = (b: number) => new Uint8Array(n * kb * b).map((_, i) => (i * 2654435761) >>> 24);
  const scales32 = values(n * kb, 7, 0.01), perRow = values(n, 8, 0.01);
  const hf = new Uint16Array(n * k);
  for (let i = 0; i < hf.length; i++) hf[i] = 0x3c00 + ((Math.imul(i, 2654435761) >>> 25) - 64); // bf16 values about 0.005..0.02
  return [
    { name: 'bf16', desc: { format: BF16P, rows: n, cols: k, data: panels } },
    { name: 'bf16 f32', desc: { format: BF16, rows: n, cols: k, data: hf } },
    { name: 'q8 g32', desc: { format: Q8, rows: n, cols: k, data: bytes(32), scales: scales32, group: 32 } },
    { name: 'q4 g32', desc: { format: Q4, rows: n, cols: k, data: bytes(16), scales: scales32, group: 32 } },
    { name: 'w8a8', desc: { format: Q8, rows: n, cols: k, data: bytes(32), scales: perRow, group: k, perToken: true } },
  ];
}

const descBytes = (d: WeightDesc) => d.data.byteLength + (d.scales?.byteLength ?? 0) + (d.mins?.byteLength ?? 0);

/** Times y = x·Wᵀ for W [n, k] in every format at m rows: `reps` timed calls after one warm-up. */
export function timeProducts(addon: NativeAddon, m: number, n: number, k: number, reps: number): ProductTiming[] {
  const x = values(m * k, 3, 1), y = new Float32Array(m * n), flops = 2 * m * n * k;
  const inner = Math.max(1, Math.ceil(2e9 / flops)); // small products: several calls per sample
  return weights(n, k).map(({ name, desc }) => {
    const run = () => addon.linear({ x, m, weight: desc, y });
    run();
    let best = 0;
    const c0 = process.cpuUsage();
    for (let r = 0; r < reps; r++) {
      const t = performance.now();
      for (let i = 0; i < inner; i++) run();
      best = Math.max(best, (inner * flops) / ((performance.now() - t) / 1000) / 1e9);
    }
    const u = process.cpuUsage(c0);
    return { format: name, wall: best, cpu: (reps * inner * flops) / ((u.user + u.system) / 1e6) / 1e9, bytes: descBytes(desc) };
  });
}

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('shapes', { type: 'string', default: '512x4096x4096,512x14336x4096,512x4096x14336,1x14336x4096', describe: 'm x n x k products' })
    .option('reps', { type: 'number', default: 3 })
    .option('threads', { type: 'number', default: availableParallelism() })
    .parseSync();
  const loaded = loadNativeAddon();
  if (!loaded.addon) throw new Error(loaded.reason);
  const addon = loaded.addon;
  addon.setThreads(a.threads);
  const info = addon.info();
  console.log(`${loaded.reason}; ${info.threads} threads; machine load ${loadavg().map((x) => x.toFixed(2)).join(' / ')} on ${availableParallelism()} cores`);
  for (const shape of a.shapes.split(',')) {
    const [m, n, k] = shape.split('x').map(Number);
    const rows = timeProducts(addon, m, n, k, a.reps);
    const bf16 = rows.filter((r) => r.format.startsWith('bf16'));
    const base = bf16.reduce((x, y) => (y.cpu > x.cpu ? y : x));
    for (const r of rows) {
      console.log(`${shape} ${r.format.padEnd(8)} ${r.wall.toFixed(1).padStart(7)} GFLOP/s wall, ${r.cpu.toFixed(1).padStart(7)} per CPU-second, ` +
        `${(r.bytes / 1e6).toFixed(1)} MB of weight` + (bf16.includes(r) ? '' : `: ${(r.cpu / base.cpu).toFixed(2)}x ${base.format} per CPU-second`));
    }
  }
}
