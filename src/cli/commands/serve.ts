import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, logger, type ArgsOf } from '../common.ts';
import { startServe } from '../../serve/server.ts';

const options = (y: Argv<GlobalArgs>) => y
  .option('model', { type: 'string', demandOption: true, describe: 'directory written by `mka export tfjs`' })
  .option('tokenizer', { type: 'string', describe: 'directory with tokenizer.json (default: the export\'s source model)' })
  .option('port', { type: 'number', default: 8080, describe: 'TCP port (0: any free port)' })
  .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on (0.0.0.0: every interface)' })
  .example('$0 serve --model results/demo/tfjs-mka-4', '');

export const serveCommand: CommandModule<GlobalArgs, ArgsOf<typeof options>> = {
  command: 'serve',
  describe: 'Serve an exported tfjs model with a page that generates text in the browser',
  builder: options,
  handler: async (a) => {
    const s = await startServe({ model: a.model, tokenizer: a.tokenizer, port: a.port, host: a.host });
    logger(a)(`serving ${a.model}: open ${s.url}/ (Ctrl-C to stop)`);
    if (a.json) process.stdout.write(JSON.stringify({ url: s.url }) + '\n');
    await new Promise<void>((ok) => {
      const stop = () => void s.close().then(ok);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
