import { defineCommand } from '../options.ts';
import { MODEL, REVISION } from '../../model/options.ts';

export const infoCommand = defineCommand({
  command: 'info',
  describe: 'Architecture, layers, heads, parameters, dtype and size on disk of a model',
  options: [MODEL, REVISION],
  examples: [['$0 info --model models/demo', '']],
  run: async (v, ctx) => {
    const { modelInfo } = await import('../../model/info.ts');
    const i = modelInfo(v.model);
    if (ctx.json) {
      process.stdout.write(JSON.stringify(i) + '\n');
      return;
    }
    const rows: [string, string][] = [
      ['model', i.dir], ['architecture', `${i.architecture} (${i.model_type})`], ['layers', String(i.layers)],
      ['hidden / intermediate', `${i.hidden_size} / ${i.intermediate_size}`],
      ['heads / kv heads / head dim', `${i.heads} / ${i.kv_heads} / ${i.head_dim}`],
      ['vocab', String(i.vocab_size)], ['context', String(i.max_position_embeddings)], ['rope', i.rope],
      ['parameters', `${i.parameters.toLocaleString('en-US')} (${(i.parameters / 1e6).toFixed(2)} M)`],
      ['tied embeddings', String(i.tied_embeddings)], ['dtype', i.dtypes.join(', ')], ...(i.quantization ? [['quantization', i.quantization] as [string, string]] : []),
      ['size on disk', `${(i.bytes_on_disk / 2 ** 20).toFixed(2)} MiB`],
    ];
    for (const [k, val] of rows) process.stdout.write(`${k.padEnd(28)} ${val}\n`);
  },
});
