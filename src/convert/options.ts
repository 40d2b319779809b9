/** The options of `mka convert-llama2c`, declared once (contract 5, src/runtime/options.ts). */
import { option } from '../runtime/options.ts';

export const CHECKPOINT = option({ name: 'checkpoint', option: 'checkpoint', type: 'string', required: true, path: 'file', help: 'llama2.c model .bin (legacy or ak42 v1 header)' });
export const LLAMA2C_TOKENIZER = option({ name: 'tokenizer', option: 'tokenizer', type: 'string', required: true, path: 'file', help: 'llama2.c tokenizer.bin' });
export const LLAMA2C_DTYPE = option({ name: 'dtype', option: 'dtype', type: 'choice', choices: ['float32'], default: 'float32', help: 'storage dtype (llama2.c weights are float32)' });
