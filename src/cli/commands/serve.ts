import { defineCommand } from '../options.ts';
import { EXPORTED_MODEL, HOST, PORT, SERVE_TOKENIZER } from '../../serve/options.ts';

export const serveCommand = defineCommand({
  command: 'serve',
  describe: 'Serve an exported tfjs model with a page that generates text in the browser',
  options: [EXPORTED_MODEL, SERVE_TOKENIZER, PORT, HOST],
  examples: [['$0 serve --model results/demo/tfjs-mka-4', '']],
  run: async (v, ctx) => {
    const { startServe } = await import('../../serve/server.ts');
    const s = await startServe({ model: v.model, tokenizer: v.tokenizer, port: v.port, host: v.host });
    ctx.log(`serving ${v.model}: open ${s.url}/ (Ctrl-C to stop)`);
    if (ctx.json) process.stdout.write(JSON.stringify({ url: s.url }) + '\n');
    await new Promise<void>((ok) => {
      const stop = () => void s.close().then(ok);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
});
