/**
 * The names of mka's custom tfjs kernels: the contract between the decoder's ops (src/model/ops.ts),
 * which run a kernel when the backend has it, and the native backend (native-kernels.ts), which
 * registers them.
 */
export const KERNELS = {
  linear: 'MkaLinear',
  /** Contract 1's packed integer weights (docs/quantization.md, Format): inputs x, q, scales, mins?, bias?, residual?; attrs bits, group, cols, symmetric, actBits, floatProducts. */
  linearQ: 'MkaLinearQ',
  attention: 'MkaAttention',
  rmsNorm: 'MkaRmsNorm',
  rope: 'MkaRope',
  siluMul: 'MkaSiluMul',
  gather: 'MkaGatherRows',
  decoderLayer: 'MkaDecoderLayer',
  packBf16: 'MkaPackBf16',
} as const;
