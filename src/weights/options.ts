/**
 * Weight storage choices the options name (contract 5), apart from the code that converts weights so
 * that parsing options does not load tfjs.
 */

/** tfjs' own weight quantization: none (float32), float16, or uint8/uint16 affine per tensor. */
export const QUANT_SCHEMES = ['none', 'float16', 'uint8', 'uint16'] as const;
export type QuantScheme = (typeof QUANT_SCHEMES)[number];
