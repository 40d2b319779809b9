/**
 * The names of mka's custom tfjs kernels: the contract between the decoder's ops (src/model/ops.ts),
 * which run a kernel when the backend has it, and the native backend (native-kernels.ts), which
 * registers them.
 */
export const KERNELS = {
  linear: 'MkaLinear',
  /** x·Wᵀ for a packed 8/4-bit weight (contract 1): inputs x, q, scales, mins?, bias?, residual?; attrs bits, group, cols, symmetric, actBits. */
  linearQ: 'MkaLinearQ',
  attention: 'MkaAttention',
  rmsNorm: 'MkaRmsNorm',
  rope: 'MkaRope',
  siluMul: 'MkaSiluMul',
  gather: 'MkaGatherRows',
  decoderLayer: 'MkaDecoderLayer',
} as const;
