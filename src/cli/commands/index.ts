/**
 * Every command of the CLI, in the order `--help` lists them (the docs test checks this list).
 * A command's module, and the library code it pulls in (tfjs, vega), is imported only when that
 * command runs or shows its help, so `mka --help` and `mka info` start without loading tfjs. The
 * name and one-line description live here for the top-level help; test/cli-lazy.test.ts checks
 * they equal the module's own.
 */
import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../common.ts';

/** A command registered by name and description whose module is loaded on first use. */
export interface LazyCommand {
  command: string;
  describe: string;
  /** The command's module. */
  load(): Promise<{ command?: string | readonly string[]; describe?: string | false }>;
  /** Registers the command on `y`; its module is imported when the command runs or shows its help. */
  register<T extends GlobalArgs>(y: Argv<T>): Argv<T>;
}

function lazy<U>(command: string, describe: string, load: () => Promise<CommandModule<GlobalArgs, U>>): LazyCommand {
  return {
    command, describe, load,
    register: <T extends GlobalArgs>(y: Argv<T>) => y.command<U>({
      command, describe,
      builder: async (yy) => {
        const { builder } = await load();
        if (typeof builder !== 'function') throw new Error(`${command}: a command's builder must be a function`);
        return builder(yy);
      },
      handler: async (a) => (await load()).handler(a),
    }),
  };
}

export const COMMANDS: LazyCommand[] = [
  lazy('info', 'Architecture, layers, heads, parameters, dtype and size on disk of a model', async () => (await import('./info.ts')).infoCommand),
  lazy('forward', 'Run one sequence: the most likely next tokens, and on request its logits and hidden states, as JSON', async () => (await import('./forward.ts')).forwardCommand),
  lazy('generate', 'Generate text (greedy when --temperature is 0)', async () => (await import('./generate.ts')).generateCommand),
  lazy('convert-llama2c', 'Import a llama2.c checkpoint and tokenizer.bin as a Hugging Face model directory', async () => (await import('./convert.ts')).convertCommand),
  lazy('similarity', 'Layer similarity (diffusion embedding + NPIB, or --metric cka) from a model\'s calibration pass or from activations', async () => (await import('./similarity.ts')).similarityCommand),
  lazy('compress', 'Remove K layers by merging (mka, laco) or pruning (reverse, shortgpt, angular, sleb, taylor, magnitude); writes a HF model, merge.json, mergekit.yaml and a model card', async () => (await import('./compress.ts')).compressCommand),
  lazy('quantize', 'Quantize a model to packed 8/4-bit weights (rtn, gptq, awq, smoothquant); writes a model directory every command takes', async () => (await import('./quantize.ts')).quantizeCommand),
  lazy('eval', 'Evaluate a model on benchmarks (mmlu, hellaswag, arc_easy, ..., several at once: tasks) or a text corpus (ppl)', async () => (await import('./eval.ts')).evalCommand),
  lazy('export', 'Export a model for serving: tfjs (GraphModel), hf (Hugging Face checkpoint) or gguf (llama.cpp, ollama, LM Studio)', async () => (await import('./export.ts')).exportCommand),
  lazy('sweep', 'MMLU (and other tasks\') accuracy of every method at every removal count: results.csv/json, plots, summary.md (resumable)', async () => (await import('./sweep.ts')).sweepCommand),
  lazy('worker', 'Run sweep jobs from a Redis queue (start any number, on any machine sharing the results directory)', async () => (await import('./worker.ts')).workerCommand),
  lazy('queue', 'State of a sweep queue (status)', async () => (await import('./queue.ts')).queueCommand),
  lazy('serve', 'Serve an exported tfjs model with a page that generates text in the browser', async () => (await import('./serve.ts')).serveCommand),
  lazy('demo', 'The whole pipeline on the bundled demo model (what `npm start` runs): sweep, report, tfjs export', async () => (await import('./demo.ts')).demoCommand),
];
