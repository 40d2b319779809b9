/**
 * Every quantization method by name, and the quantization a command asks for: `--method/--bits/
 * --group-size` (mka quantize) or one spec string such as `gptq:w4g128`, `rtn:w8`, `awq:w4g128-asym`,
 * `smoothquant:w8a8` (compress --quantize, a sweep's quantize axis).
 */
import { UserError } from '../runtime/errors.ts';
import { flag } from '../runtime/options.ts';
import { BITS, DEFAULT_EMBEDDING_BITS, GROUP_SIZE, QUANTIZE_AFTER, QUANT_METHOD, QUANT_SPEC } from './options.ts';
import { GROUP_SIZES } from '../io/packed.ts';
import type { QuantGrid, QuantMethod, QuantParams } from './method.ts';
import { rtn } from './methods/rtn.ts';
import { gptq } from './methods/gptq.ts';
import { awq } from './methods/awq.ts';
import { smoothquant } from './methods/smoothquant.ts';

export const QUANT_METHODS: readonly QuantMethod[] = [rtn, gptq, awq, smoothquant];

/** The method called `name`, or a UserError listing the known ones. */
export function getQuantMethod(name: string, option = flag(QUANT_METHOD)): QuantMethod {
  const m = QUANT_METHODS.find((x) => x.name === name);
  if (!m) throw new UserError(`${option} ${name} is not a quantization method; methods: ${QUANT_METHODS.map((x) => x.name).join(', ')}`);
  return m;
}

/** A quantization to run: the method, its grid and its own parameters, and the embedding's bits. */
export interface Quantization {
  method: string;
  grid: QuantGrid;
  params: QuantParams;
  /**
   * Bits of the token embedding, rounded to nearest in symmetric groups of 32 (ggml's Q8_0 / Q4_0 blocks)
   * whatever the method; lm_head (and a tied table) is 8-bit. Default DEFAULT_EMBEDDING_BITS (8).
   */
  embeddingBits: 4 | 8;
}

/** The method's parameters: its defaults, then `given` (checked against the declarations). */
export function methodParams(method: QuantMethod, given: Record<string, unknown> = {}): QuantParams {
  const out: QuantParams = {};
  for (const p of method.params) {
    const v = given[p.name] ?? p.default;
    if (p.type === 'boolean' ? typeof v !== 'boolean' : typeof v !== 'number' || !Number.isFinite(v)) {
      throw new UserError(`--${p.name} ${String(v)}: ${method.name}'s ${p.name} must be ${p.type === 'boolean' ? 'true or false' : 'a number'}`);
    }
    if (typeof v === 'number' && ((p.min !== undefined && v < p.min) || (p.max !== undefined && v > p.max))) {
      throw new UserError(`--${p.name} ${v}: ${method.name}'s ${p.name} must be within ${p.min ?? '-∞'}..${p.max ?? '∞'}`);
    }
    out[p.name] = v as number | boolean;
  }
  return out;
}

/** Checks a grid given as options: bits 8 or 4, group 32/64/128 or per channel. */
export function checkGrid(grid: QuantGrid, method: QuantMethod): QuantGrid {
  if (grid.bits !== 4 && grid.bits !== 8) throw new UserError(`${flag(BITS)} ${grid.bits}: must be 8 or 4`);
  if (grid.group !== 'channel' && !(GROUP_SIZES as readonly number[]).includes(grid.group)) {
    throw new UserError(`${flag(GROUP_SIZE)} ${grid.group}: must be 32, 64, 128 or 0 (one group per output channel)`);
  }
  method.checkGrid(grid);
  return grid;
}

/** Parses a spec string (`gptq:w4g128`, `rtn:w8`, `smoothquant:w8a8`, `rtn:w4g32-asym`, `gptq:w4g32e4`); `none` is null. */
export function parseQuantization(spec: string, option = flag(QUANTIZE_AFTER)): Quantization | null {
  if (spec === 'none') return null;
  const m = QUANT_SPEC.exec(spec);
  if (!m) {
    throw new UserError(`${option} ${spec}: expected METHOD:wBITS[gGROUP][eBITS][a8][-asym] such as gptq:w4g128, rtn:w8, awq:w4g128, smoothquant:w8a8, gptq:w4g32e4 (or none)`);
  }
  const method = getQuantMethod(m[1], option);
  const grid: QuantGrid = { bits: Number(m[2]) as 4 | 8, group: m[3] ? Number(m[3]) : 'channel', symmetric: !m[6] };
  if (!!m[5] !== !!method.actBits) {
    throw new UserError(`${option} ${spec}: ${m[5] ? `${method.name} quantizes weights only (no a8)` : `${method.name} also quantizes activations: write ${m[1]}:w${m[2]}a8`}`);
  }
  const embeddingBits = (m[4] ? Number(m[4]) : DEFAULT_EMBEDDING_BITS) as 4 | 8;
  return { method: method.name, grid: checkGrid(grid, method), params: methodParams(method), embeddingBits };
}

/** The spec string of a quantization (parseQuantization's inverse; default parameters and embedding bits implied). */
export function quantizationName(q: Quantization | null): string {
  if (!q) return 'none';
  const method = getQuantMethod(q.method);
  const embedding = q.embeddingBits === DEFAULT_EMBEDDING_BITS ? '' : `e${q.embeddingBits}`;
  return `${q.method}:w${q.grid.bits}${q.grid.group === 'channel' ? '' : `g${q.grid.group}`}${embedding}${method.actBits ? 'a8' : ''}${q.grid.symmetric ? '' : '-asym'}`;
}
