/** The options of `mka serve`, declared once (contract 5, src/runtime/options.ts). */
import { option } from '../runtime/options.ts';

export const EXPORTED_MODEL = option({ name: 'model', option: 'model', type: 'string', required: true, path: 'directory', help: 'directory written by `mka export tfjs`' });
export const SERVE_TOKENIZER = option({ name: 'tokenizer', option: 'tokenizer', type: 'string', path: 'directory', help: 'directory with tokenizer.json (default: the export\'s source model)' });
export const PORT = option({ name: 'port', option: 'port', type: 'integer', min: 0, max: 65535, default: 8080, help: 'TCP port (0: any free port)' });
export const HOST = option({ name: 'host', option: 'host', type: 'string', default: '127.0.0.1', help: 'address to listen on (0.0.0.0: every interface)' });
