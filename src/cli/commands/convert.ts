import { defineCommand } from '../options.ts';
import { FORCE_DIR, claimOutput } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { option } from '../../runtime/options.ts';
import { CHECKPOINT, LLAMA2C_DTYPE, LLAMA2C_TOKENIZER } from '../../convert/options.ts';

const OUT = option({ ...OUT_SPEC, required: true, help: 'output model directory' });

export const convertCommand = defineCommand({
  command: 'convert-llama2c',
  describe: 'Import a llama2.c checkpoint and tokenizer.bin as a Hugging Face model directory',
  options: [CHECKPOINT, LLAMA2C_TOKENIZER, OUT, LLAMA2C_DTYPE, FORCE_DIR],
  examples: [['$0 convert-llama2c --checkpoint stories260K.bin --tokenizer tok512.bin --out models/stories260K', '']],
  run: async (v, ctx) => {
    const release = claimOutput(v.out, 'convert-llama2c', 'hf-model', v.force, ctx.inputs);
    const { convertLlama2c } = await import('../../convert/llama2c.ts');
    await convertLlama2c({ checkpoint: v.checkpoint, tokenizer: v.tokenizer, out: v.out });
    release();
    ctx.log(`converted ${v.checkpoint} -> ${v.out}`);
  },
});
