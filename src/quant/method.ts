/**
 * What a quantization method is (one file each in methods/, listed in registry.ts): it turns one
 * decoder layer's float weights, and when it needs them the layer's calibration inputs, into packed
 * linears (src/io/packed.ts) and the layer's other tensors (norms it folded scales into). The driver
 * (quantize.ts) streams the model through it one layer at a time and rounds the embedding and lm_head
 * to nearest itself (a method's algorithm is for linears, not a lookup table).
 */
import { type LlamaConfig, layerTensorShapes } from '../model/config.ts';
import { packedBytes, type PackedMatrix, type PackedSpec } from '../io/packed.ts';
import type { CalibrationSet } from './calibration.ts';

/** The quantization grid asked for: bits, inputs per group (or one group per output channel), symmetry. */
export interface QuantGrid {
  bits: 4 | 8;
  group: number | 'channel';
  symmetric: boolean;
}

/** A method's own parameter, declared once (defaults, range, help) for the CLI, quantize.json and errors. */
export interface QuantParam {
  name: string;
  type: 'number' | 'boolean';
  default: number | boolean;
  describe: string;
  min?: number;
  max?: number;
}

export type QuantParams = Record<string, number | boolean>;

/** Where a method's calibration inputs of layer i come from: none needed, the float model, or the layers already quantized. */
export type CalibrationInputs = 'none' | 'float' | 'quantized';

/** What a method gets for one decoder layer. */
export interface LayerJob {
  config: LlamaConfig;
  layer: number;
  /** The layer's float tensors by suffix (`self_attn.q_proj.weight`, `input_layernorm.weight`, ...), HF layout. */
  weights: Map<string, Float32Array>;
  /**
   * When given, a method calls it with a linear's suffix once it no longer needs that linear's float
   * values, and the driver drops them from `weights` (GPTQ, so that the linears done are not held beside
   * the next one's solve); absent when the driver needs the float layer afterwards.
   */
  release?(suffix: string): void;
  /** Shapes of the layer's tensors by suffix (config.ts layerTensorShapes). */
  shapes: ReadonlyMap<string, number[]>;
  /** The packing of each linear (by weight suffix). */
  spec(suffix: string): PackedSpec;
  /** The layer's calibration inputs (null for methods without calibration). */
  calibration: CalibrationSet | null;
  params: QuantParams;
  log(msg: string): void;
}

/** What a method returns for a layer. */
export interface LayerResult {
  /** Packed linears by weight suffix. */
  packed: Map<string, PackedMatrix>;
  /** Every other tensor of the layer by suffix (norms, biases), possibly changed (scales folded in). */
  floats: Map<string, Float32Array>;
  /** Per linear (by projection name), figures for quantize.json: GPTQ's loss, AWQ's chosen exponent, ... */
  stats: Record<string, Record<string, number>>;
  /**
   * What the method did other than asked, as counts by what it was (e.g. "linears whose Hessian needed more
   * dampening": 1): the driver adds them up over the layers and says each once, with its count.
   */
  notes?: Record<string, number>;
}

/** The sizes a method's memory estimate takes (no weights, no prompts: their shapes only). */
export interface LayerMemoryShape {
  config: LlamaConfig;
  grid: QuantGrid;
  params: QuantParams;
  /** Calibration rows as held: the micro-batches' rows × their longest prompt, summed (padding included); 0 without calibration. */
  tokens: number;
  /** The largest micro-batch's rows × its longest prompt (padding included); 0 without calibration. */
  batchRows: number;
  /** Bytes of the largest micro-batch's activations through the layer (runBlock's intermediates), 0 without calibration. */
  forward: number;
  /** Tensors made from arrays are copies (the wasm heap), not views of the same memory (tfjs' CPU backends). */
  copies: boolean;
}

/** What a method holds at its peak while quantizing one decoder layer, beyond the driver's share (quant/memory.ts). */
export interface MethodMemory {
  bytes: number;
  /** Of which tfjs tensors (what counts against the wasm heap). */
  tensors: number;
  /** What the bytes are, for the memory check's message ("gptq's Hessian and solver of mlp.down_proj (14336 inputs)"). */
  what: string;
  /** Bytes of the layer's float32 weights (LayerJob.weights) still held then, when the method has released some (default: all of them). */
  weights?: number;
}

export interface QuantMethod {
  name: string;
  /** One line for --help and quantize.json. */
  description: string;
  /** The paper it implements. */
  reference: string;
  params: QuantParam[];
  calibration: CalibrationInputs;
  /** Int8 activations per token for the decoder's linears (SmoothQuant's W8A8). */
  actBits?: 8;
  /** Throws a UserError when the method cannot quantize to `grid` (e.g. SmoothQuant is 8-bit per channel). */
  checkGrid(grid: QuantGrid): void;
  quantizeLayer(job: LayerJob): LayerResult | Promise<LayerResult>;
  /** What quantizeLayer holds at its peak beyond the layer's float32 weights (as much of them as it still holds) and calibration states (each method beside its code). */
  memory(shape: LayerMemoryShape): MethodMemory;
}

/** The seven linears of a decoder layer, by projection name, in the decoder's order. */
export const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

/** The packing of a [rows, cols] weight on `grid`. */
export function specFor(grid: QuantGrid, cols: number): PackedSpec {
  return { bits: grid.bits, group: grid.group === 'channel' ? cols : grid.group, symmetric: grid.symmetric };
}

/** The weights of a layer other than its linears' (norms, biases), unchanged. */
export function otherTensors(weights: Map<string, Float32Array>): Map<string, Float32Array> {
  const linear = new Set(LINEARS.map((p) => `${p}.weight`));
  return new Map([...weights].filter(([s]) => !linear.has(s)));
}

/** The seven linears of a layer of `config`: weight suffix, rows (outputs) and columns (inputs). */
export function linearShapes(config: LlamaConfig): { suffix: string; rows: number; cols: number }[] {
  const shapes = layerTensorShapes(config);
  return LINEARS.map((p) => {
    const [rows, cols] = shapes.get(`${p}.weight`)!;
    return { suffix: `${p}.weight`, rows, cols };
  });
}

/** Bytes of a layer's tensors as float32 (what a method gets in LayerJob.weights). */
export function layerFloatBytes(config: LlamaConfig): number {
  let n = 0;
  for (const shape of layerTensorShapes(config).values()) n += shape.reduce((a, d) => a * d, 1);
  return 4 * n;
}

/** Bytes of a layer's linears packed on `grid` as held in memory (quants, float32 scales and mins). */
export function layerPackedBytes(config: LlamaConfig, grid: QuantGrid): number {
  return linearShapes(config).reduce((a, l) => a + packedBytes(l.rows, l.cols, specFor(grid, l.cols)), 0);
}
