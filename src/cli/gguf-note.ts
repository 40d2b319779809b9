/**
 * The one line a command that runs a model prints when that model is a GGUF file with blocks mka does
 * not run packed (Q4_K, Q6_K, Q5_0, ...): how mka holds them (yargs middleware, after the hub ids are
 * resolved). Q8_0, Q4_0 and Q4_1 matrices load as packed weights, and the model loader says how those run.
 */
import { isGgufFile } from '../gguf/reader.ts';

/**
 * Prints the note for --model / --reference-model GGUF files of commands that compute (they take
 * --backend), once the file is known to be a valid model (else the command reports the problem alone).
 */
export async function noteGgufModels(argv: Record<string, unknown>): Promise<void> {
  if (argv.quiet === true || argv.json === true || !('backend' in argv)) return;
  for (const option of ['model', 'reference-model']) {
    const path = argv[option];
    if (typeof path !== 'string' || !isGgufFile(path)) continue;
    let counts: Map<string, number>;
    try {
      const { openModelDir } = await import('../model/model.ts');
      const { ckpt } = openModelDir(path);
      counts = new Map();
      for (const name of ckpt.names()) {
        const t = ckpt.info(name)!.dtype;
        // (Q8_0/Q4_0/Q4_1 matrices load as packed weights and run as such)
        if (t !== 'F32' && t !== 'F16' && t !== 'BF16' && !ckpt.packedInfo(name)) counts.set(t, (counts.get(t) ?? 0) + 1);
      }
      ckpt.close();
    } catch {
      continue; // the command reports a broken file itself
    }
    if (counts.size === 0) continue;
    const what = [...counts].map(([t, n]) => `${n} ${t}`).join(' and ');
    process.stderr.write(`${path}: ${what} tensors stay in their blocks in memory and are dequantized one layer at a time when used (embedding and lm_head at load); mka's integer kernels take Q8_0, Q4_0 and Q4_1 blocks only\n`);
  }
}
