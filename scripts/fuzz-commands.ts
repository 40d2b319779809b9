/**
 * Corrupt models through the real command line (a dev script, not part of `npm test`; the regression
 * tests of what it found are in the suite). Where scripts/fuzz-readers.ts drives the readers through the
 * library, this runs `bin/mka.mjs` as a user would, on the same mutations (its GGUF and safetensors
 * mutators, plus quantization_config fields against the packed tensors) of five seeds: the demo's float
 * safetensors, the demo quantized by `mka quantize` (rtn w4g32 and gptq w4g32, packed directories) and the
 * demo exported as GGUF q8_0 and q4_0. Each variant goes through two of the commands `info`, `forward`,
 * `quantize` (rtn; gptq one time in eight), `compress`, `eval mmlu`, `eval ppl` and `export gguf|hf|tfjs`,
 * and each command's --out is, in turn, absent, an earlier output of that command on the valid seed
 * (kept byte for byte unless the run succeeds), or an empty directory (for directory outputs). A run is
 *   ok       exit 0
 *   refused  exit 1 with one line on stderr naming the model (its directory, a file in it, or the GGUF file)
 *   BUG      anything else: exit 2 or a signal, a stack trace, more than one line, an unnamed message,
 *            no answer within the deadline; or after a refusal an output that appeared or changed, a
 *            temporary or lock file left, the model's own files changed (also after a success).
 *
 *   nice -n 19 node --import tsx scripts/fuzz-commands.ts [--per-seed 300] [--seed 1] [--minutes M] [--only demo,rtn,gptq,q8_0,q4_0] [--commands info,forward,...] [--verbose]
 *
 * Prints one line per bug and a table of outcomes per seed and command; exit 1 when any bug was found.
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ggufVariants, rng, safetensorsVariants, type Variant } from './fuzz-readers.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MKA = join(ROOT, 'bin/mka.mjs');
const DEADLINE_MS = 120_000;
const TEXT = 'Question: What is 7 + 5?\nAnswer: A';
const CALIBRATION = [
  'The capital of France is Paris.', 'Question: What is 7 + 5?', 'Answer: 12', 'A small model reads a few tokens.',
  'The quick brown fox jumps over the lazy dog.', 'Layers are merged by similarity.',
].join('\n') + '\n';

/** How a command writes its output. */
type OutKind = 'none' | 'file' | 'dir';
interface Command { name: string; out: OutKind; ext?: string; args: (model: string, out: string, ctx: Ctx) => string[] }
interface Ctx { calibration: string; mmlu: string }

const COMMANDS: Command[] = [
  { name: 'info', out: 'none', args: (m) => ['info', '--model', m] },
  { name: 'forward', out: 'file', ext: '.json', args: (m, o) => ['forward', '--model', m, '--text', TEXT, '--logits', 'last', '--threads', '1', '--out', o] },
  { name: 'quantize', out: 'dir', args: (m, o) => ['quantize', '--model', m, '--method', 'rtn', '--group-size', '32', '--threads', '1', '--out', o] },
  { name: 'quantize-gptq', out: 'dir', args: (m, o, c) => ['quantize', '--model', m, '--method', 'gptq', '--group-size', '32', '--calibration', c.calibration, '--threads', '1', '--out', o] },
  { name: 'compress', out: 'dir', args: (m, o, c) => ['compress', '--model', m, '--calibration', c.calibration, '--remove', '2', '--k-entropy', '3', '--k-mi', '2', '--threads', '1', '--out', o] },
  { name: 'eval-mmlu', out: 'dir', args: (m, o, c) => ['eval', 'mmlu', '--model', m, '--data', c.mmlu, '--subjects', 'abstract_algebra', '--limit', '2', '--threads', '1', '--out', o] },
  { name: 'eval-ppl', out: 'dir', args: (m, o, c) => ['eval', 'ppl', '--model', m, '--text', c.calibration, '--seq-len', '16', '--threads', '1', '--out', o] },
  { name: 'export-gguf', out: 'file', ext: '.gguf', args: (m, o) => ['export', 'gguf', '--model', m, '--type', 'q4_0', '--out', o] },
  { name: 'export-hf', out: 'dir', args: (m, o) => ['export', 'hf', '--model', m, '--out', o] },
  { name: 'export-tfjs', out: 'dir', args: (m, o) => ['export', 'tfjs', '--model', m, '--out', o] },
];

/** The state of a path: every file under it with its size and sha256 (directories as entries). */
function snapshot(path: string): string {
  if (!existsSync(path)) return '(absent)';
  const st = statSync(path);
  if (st.isFile()) return createHash('sha256').update(readFileSync(path)).digest('hex');
  const out: string[] = [];
  for (const e of readdirSync(path, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    out.push(e.isDirectory() ? `${p}/` : `${p} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
  }
  return out.sort().join('\n');
}

/** Temporaries (`.NAME.tmp-PID-HEX`) and lock files (`.NAME.mka-lock`) anywhere under `dir`. */
function leftovers(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => /\.tmp-\d+-[0-9a-f]+$|\.mka-lock(\.|$)/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

interface Run { code: number | null; signal: string | null; stderr: string; ms: number }

function runMka(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const t0 = Date.now();
  return new Promise((res) => {
    const child = spawn(process.execPath, [MKA, ...args, '--quiet'], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-8000); });
    const timer = setTimeout(() => { stderr += '\n(hang: killed at the deadline)'; child.kill('SIGKILL'); }, DEADLINE_MS);
    child.on('exit', (code, signal) => { clearTimeout(timer); res({ code, signal, stderr, ms: Date.now() - t0 }); });
  });
}

type OutState = 'absent' | 'own' | 'empty';

interface Outcome { outcome: 'ok' | 'refused' | 'bug'; detail: string }

/** Judges one run: exit code, stderr, the output and its neighbourhood, the model's files. */
function judge(r: Run, model: string, names: string[], out: string, state: OutState, before: string, modelBefore: string, outsDir: string): Outcome {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  const modelAfter = snapshot(model);
  if (modelAfter !== modelBefore) return { outcome: 'bug', detail: `the model's files changed (exit ${r.code})` };
  const left = leftovers(outsDir);
  if (left.length) return { outcome: 'bug', detail: `left ${left.map((p) => basename(p)).join(', ')} (exit ${r.code})` };
  if (r.code === 0) return { outcome: 'ok', detail: lines.join(' | ').slice(0, 200) };
  if (r.code !== 1) return { outcome: 'bug', detail: `exit ${r.code ?? r.signal}: ${lines.slice(0, 4).join(' | ').slice(0, 600)}` };
  if (lines.length !== 1) return { outcome: 'bug', detail: `${lines.length} lines on stderr: ${lines.slice(0, 4).join(' | ').slice(0, 600)}` };
  const m = lines[0];
  if (/internal error|\n\s+at /.test(r.stderr)) return { outcome: 'bug', detail: m.slice(0, 600) };
  if (!names.some((n) => m.includes(n))) return { outcome: 'bug', detail: `does not name the model: ${m.slice(0, 400)}` };
  const after = snapshot(out);
  if (after !== before) return { outcome: 'bug', detail: `refused but the --out (${state}) changed: ${m.slice(0, 300)}` };
  return { outcome: 'refused', detail: m };
}

/** The quantization_config of a packed seed with one field changed (item: configs that contradict the tensors). */
function qconfigVariants(seedDir: string, tag: string, work: string): Variant[] {
  const dir = join(work, tag);
  const cfgFile = join(dir, 'config.json');
  const cfg = JSON.parse(readFileSync(join(seedDir, 'config.json'), 'utf8'));
  const q = cfg.quantization_config;
  const v: Variant[] = [];
  const add = (label: string, qc: Record<string, unknown>) => v.push({
    family: `qconfig ${tag}`, cls: 'quantization_config', label,
    apply: () => {
      cpSync(join(seedDir, 'model.safetensors'), join(dir, 'model.safetensors'));
      writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: qc }));
      return { id: 0, kind: 'model', model: dir, names: [cfgFile, dir] };
    },
  });
  for (const bits of [8, 4]) if (bits !== q.bits) add(`bits ${bits}`, { ...q, bits });
  for (const g of [-1, 16, 64, 128, 256]) if (g !== q.group_size) add(`group_size ${g}`, { ...q, group_size: g });
  add(`sym ${!q.sym}`, { ...q, sym: !q.sym });
  for (const [n, t] of Object.entries(q.tables ?? {}) as [string, Record<string, unknown>][]) {
    add(`tables ${n} bits ${t.bits === 8 ? 4 : 8}`, { ...q, tables: { ...q.tables, [n]: { ...t, bits: t.bits === 8 ? 4 : 8 } } });
    add(`tables ${n} group_size 64`, { ...q, tables: { ...q.tables, [n]: { ...t, group_size: 64 } } });
  }
  return v;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string, d: string) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : d; };
  const perSeed = Number(opt('per-seed', '300'));
  const seed = Number(opt('seed', '1'));
  const minutes = Number(opt('minutes', '0'));
  const verbose = args.includes('--verbose');
  const only = new Set(opt('only', 'demo,rtn,gptq,q8_0,q4_0').split(','));
  const commands = COMMANDS.filter((c) => opt('commands', COMMANDS.map((x) => x.name).join(',')).split(',').includes(c.name));
  const shared = process.env.MKA_SHARED ?? '/work/shared';
  const work = mkdtempSync(join(tmpdir(), 'mka-fuzz-commands-'));
  const env = { ...process.env, XDG_CACHE_HOME: join(work, 'cache'), HF_HUB_OFFLINE: '1', MKA_QUIET: '1' };
  const mka = (...a: string[]) => execFileSync(process.execPath, [MKA, ...a, '--quiet'], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ctx: Ctx = { calibration: join(work, 'calibration.txt'), mmlu: join(shared, 'data/mmlu') };
  writeFileSync(ctx.calibration, CALIBRATION);
  const rnd = rng(seed);
  try {
    const seeds = join(work, 'seeds');
    mkdirSync(seeds);
    const seedPaths: Record<string, string> = { demo: join(ROOT, 'models/demo') };
    seedPaths.rtn = join(seeds, 'rtn');
    mka('quantize', '--model', seedPaths.demo, '--method', 'rtn', '--group-size', '32', '--out', seedPaths.rtn);
    seedPaths.gptq = join(seeds, 'gptq');
    mka('quantize', '--model', seedPaths.demo, '--method', 'gptq', '--group-size', '32', '--calibration', ctx.calibration, '--out', seedPaths.gptq);
    for (const t of ['q8_0', 'q4_0']) { seedPaths[t] = join(seeds, `demo-${t}.gguf`); mka('export', 'gguf', '--model', seedPaths.demo, '--type', t, '--out', seedPaths[t]); }
    // earlier outputs of every command on every valid seed: the 'own' --out state
    const golden = join(work, 'golden');
    mkdirSync(golden);
    const goldens = new Map<string, string>();
    for (const [tag, p] of Object.entries(seedPaths)) {
      if (!only.has(tag)) continue;
      for (const c of commands) {
        if (c.out === 'none') continue;
        const o = join(golden, `${tag}-${c.name}${c.ext ?? ''}`);
        try {
          mka(...c.args(p, o, ctx));
          goldens.set(`${tag}/${c.name}`, o);
        } catch {
          // the command refuses this seed (quantize a quantized model): an earlier output of it on the demo stands in
          goldens.set(`${tag}/${c.name}`, goldens.get(`demo/${c.name}`)!);
        }
      }
    }
    // the seeds' variants interleaved, so that a run stopped by --minutes has covered each alike
    const perTag: { tag: string; v: Variant }[][] = [];
    for (const tag of Object.keys(seedPaths)) {
      if (!only.has(tag)) continue;
      const all = tag.startsWith('q') ? ggufVariants(seedPaths[tag], tag, work, 1, rnd) : safetensorsVariants(seedPaths[tag], tag, work, 1, rnd);
      const chosen = [...all.filter((x) => x.cls === 'benign'), ...(tag === 'rtn' || tag === 'gptq' ? qconfigVariants(seedPaths[tag], tag, work) : []), ...sampleOf(all.filter((x) => x.cls !== 'benign'), perSeed, rnd)];
      perTag.push(chosen.map((v) => ({ tag, v })));
    }
    const variants = Array.from({ length: Math.max(...perTag.map((x) => x.length)) }, (_, i) => perTag.flatMap((x) => (i < x.length ? [x[i]] : [])));
    const flat = variants.flat();
    process.stderr.write(`fuzz-commands: ${flat.length} variants x 2 commands (seed ${seed}${minutes ? `, at most ${minutes} minutes` : ''})\n`);
    const outs = join(work, 'outs');
    const tally = new Map<string, { ok: number; refused: number; bug: number }>();
    const bugs: string[] = [];
    const t0 = Date.now();
    let runs = 0;
    let done = 0;
    for (const [i, { tag, v }] of flat.entries()) {
      if (minutes && Date.now() - t0 > minutes * 60_000) break;
      done++;
      // a directory seed's config.json as it was (the quantization_config variants change it)
      if (!tag.startsWith('q')) cpSync(join(seedPaths[tag], 'config.json'), join(work, tag, 'config.json'));
      const job = v.apply();
      const model = job.model!;
      const modelBefore = snapshot(model);
      // two commands per variant, run beside each other; gptq one time in eight
      const pool = commands.filter((c) => c.name !== 'quantize-gptq' || i % 8 === 0);
      const picked = [pool[(2 * i) % pool.length], pool[(2 * i + 1) % pool.length]].filter((c, k, a) => a.indexOf(c) === k);
      rmSync(outs, { recursive: true, force: true });
      const results = await Promise.all(picked.map(async (c, k) => {
        const dir = join(outs, String(k));
        mkdirSync(dir, { recursive: true });
        const out = join(dir, `out${c.ext ?? ''}`);
        const states: OutState[] = c.out === 'dir' ? ['absent', 'own', 'empty'] : c.out === 'file' ? ['absent', 'own'] : ['absent'];
        const state = states[(i + k) % states.length];
        if (state === 'own') cpSync(goldens.get(`${tag}/${c.name}`)!, out, { recursive: true });
        if (state === 'empty') mkdirSync(out);
        const before = snapshot(out);
        const r = await runMka(c.args(model, out, ctx), env);
        return { c, state, r, o: judge(r, model, [...job.names, out], out, state, before, modelBefore, dir) };
      }));
      for (const { c, state, r, o } of results) {
        runs++;
        const key = `${tag}\t${c.name}`;
        const t = tally.get(key) ?? { ok: 0, refused: 0, bug: 0 };
        t[o.outcome]++;
        tally.set(key, t);
        const line = `${tag} ${v.cls}: ${v.label} | ${c.name} (--out ${state}, ${r.ms} ms): ${o.detail}`;
        if (verbose) process.stdout.write(`${o.outcome} ${line.slice(0, 400)}\n`);
        if (o.outcome === 'bug') { bugs.push(line); process.stdout.write(`BUG ${line}\n`); }
      }
      if (i % 50 === 49) process.stderr.write(`fuzz-commands: ${i + 1}/${flat.length} variants, ${runs} runs, ${bugs.length} bugs, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    }
    process.stdout.write(`\nseed\tcommand\tok\trefused\tbug\n`);
    for (const [k, t] of [...tally].sort()) process.stdout.write(`${k}\t${t.ok}\t${t.refused}\t${t.bug}\n`);
    const sum = [...tally.values()].reduce((a, t) => ({ ok: a.ok + t.ok, refused: a.refused + t.refused, bug: a.bug + t.bug }), { ok: 0, refused: 0, bug: 0 });
    process.stdout.write(`total\t\t${sum.ok}\t${sum.refused}\t${sum.bug}\n${done} of ${flat.length} variants, ${runs} runs in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    process.exitCode = bugs.length ? 1 : 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Up to `n` elements of `xs`, drawn without repetition by `rnd`. */
function sampleOf<T>(xs: T[], n: number, rnd: (n: number) => number): T[] {
  const idx = xs.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) { const j = rnd(i + 1); [idx[i], idx[j]] = [idx[j], idx[i]]; }
  return idx.slice(0, n).map((i) => xs[i]);
}

await main();
