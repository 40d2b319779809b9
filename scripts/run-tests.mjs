#!/usr/bin/env node
// Runs test/**/*.test.ts with node's test runner (through tsx), one process per file, three at a time
// (CI and the dev machines have 2 cores; some files wait), the slowest files of the last run first so that
// no long file starts last. Every file runs under scripts/test-guard.mjs: a test without an assertion fails. Before a
// full run, dist/ is rebuilt when a source is newer (`npm run build`), so the many `mka` processes the
// tests start run compiled JavaScript rather than compiling src/ through tsx each time.
// The run has a temporary root of its own, each file a TMPDIR in it (scripts/test-tmp.mjs, set by the guard):
// a file that leaves anything there fails, and the run says so at the end; the root is removed either way.
//   node scripts/run-tests.mjs                  every test (as `npm test` and CI run it)
//   node scripts/run-tests.mjs --quick          the inner loop (`npm run test:quick`): the files that took under
//                                               QUICK_SECONDS in the measured run of scripts/test-durations.json,
//                                               and files it does not list yet (new ones)
//   node scripts/run-tests.mjs test/foo.test.ts only these files
//   node scripts/run-tests.mjs --wasm           with any of the above: on the WebAssembly fallback, as on a machine
//                                               without a C compiler (`npm run test:wasm`: every test): MKA_NATIVE_ADDON
//                                               names a missing addon, so mka and the tests see none; its durations are
//                                               not recorded (they would reorder the native runs)
// Other arguments are passed to `node --test` (e.g. --test-name-pattern=...).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { leftovers, makePrivateTmp, privateName } from './test-tmp.mjs';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const cacheDir = join(root, 'node_modules', '.cache', 'mka-tests');
const durationsFile = join(cacheDir, 'durations.json');
/**
 * Wall seconds of each file's process in a recorded full run (2026-12-07 10:22, 2-core AMD EPYC, three files at a
 * time, load average 5-8): the quick tier and the first order until this checkout has run.
 */
const measuredFile = join(root, 'scripts', 'test-durations.json');
/** The quick tier: files under this many seconds in the recorded run (about a second each on an idle machine). */
const QUICK_SECONDS = 3.5;
/**
 * Test files run at once (MKA_TEST_CONCURRENCY overrides): 3 on 2 cores, so that a file waiting (a worker's lock
 * expiring, a server, npm's disk writes, a killed run) leaves its core to another.
 */
const concurrency = Number(process.env.MKA_TEST_CONCURRENCY) > 0 ? Math.floor(Number(process.env.MKA_TEST_CONCURRENCY)) : 3;

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? find(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []);
}

/** file (relative to the root, '/'-separated) → seconds, from a durations file; {} when absent or unreadable. */
function readDurations(file) {
  try {
    const d = JSON.parse(readFileSync(file, 'utf8'));
    return d && typeof d === 'object' && !Array.isArray(d) ? d : {};
  } catch {
    return {};
  }
}

const key = (f) => relative(root, resolve(f)).split(sep).join('/');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const wasm = args.includes('--wasm');
const named = args.filter((a) => a.endsWith('.ts'));
const flags = args.filter((a) => !a.endsWith('.ts') && a !== '--quick' && a !== '--wasm');
const measured = readDurations(measuredFile);
let files = named.length ? named : find(join(root, 'test'));
if (quick) files = files.filter((f) => !(measured[key(f)] > QUICK_SECONDS));
// slowest first by this checkout's last run, else the measured run; files without a figure (new) first of all
const known = { ...measured, ...readDurations(durationsFile) };
const seconds = (f) => known[key(f)] ?? Infinity;
files.sort((a, b) => seconds(b) - seconds(a) || a.localeCompare(b));

/** Whether dist/ is missing or older than some file under src/ (bin/mka.mjs then runs src/ through tsx). */
function distIsStale() {
  const built = join(root, 'dist', 'BUILT');
  if (!existsSync(built)) return true;
  const t = statSync(built).mtimeMs;
  return readdirSync(join(root, 'src'), { recursive: true }).some((f) => statSync(join(root, 'src', f)).mtimeMs > t);
}

if (!named.length && !quick && distIsStale()) {
  process.stderr.write('run-tests: src/ is newer than dist/: npm run build\n');
  const b = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (b.status !== 0) process.stderr.write('run-tests: the build failed; the CLI tests run src/ through tsx\n');
}

mkdirSync(cacheDir, { recursive: true });
const thisRun = join(cacheDir, `run-${process.pid}.json`);
const realTmp = tmpdir();
const runTmp = mkdtempSync(join(realTmp, 'mka-tests-'));
chmodSync(runTmp, 0o755); // tests run mka as another user too: it must reach its file's directory
makePrivateTmp(join(runTmp, 'run'), realTmp); // the test runner's own
if (wasm) process.stderr.write('run-tests: on the WebAssembly fallback (MKA_NATIVE_ADDON names a missing addon)\n');
process.on('SIGINT', () => {}); // Ctrl-C ends the test processes (same process group); the root is removed below
process.on('SIGTERM', () => {});
const r = spawnSync(process.execPath, [
  '--import', 'tsx', '--import', join(root, 'scripts', 'test-guard.mjs'), '--test', `--test-concurrency=${concurrency}`,
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  ...(wasm ? [] : [`--test-reporter=${join(root, 'scripts', 'test-durations.mjs')}`, `--test-reporter-destination=${thisRun}`]),
  ...flags, ...files,
], {
  stdio: 'inherit',
  env: { ...process.env, TMPDIR: join(runTmp, 'run'), MKA_TEST_TMP: runTmp, ...(wasm ? { MKA_NATIVE_ADDON: join(runTmp, 'no-native-addon', 'mka_native.node') } : {}) },
});
if (existsSync(thisRun)) {
  const run = readDurations(thisRun);
  const byKey = Object.fromEntries(Object.entries(run).map(([f, s]) => [key(f), Math.round(s * 100) / 100]));
  writeFileSync(durationsFile, JSON.stringify({ ...readDurations(durationsFile), ...byKey }, null, 1) + '\n');
  rmSync(thisRun, { force: true });
}
// what each file (or a process it started, also after the file ended) left in its temporary directory
const fileOf = new Map(files.map((f) => [privateName(resolve(f), root), key(f)]));
const leaks = readdirSync(runTmp).map((d) => [d, leftovers(join(runTmp, d))]).filter(([, left]) => left.length);
for (const [d, left] of leaks) {
  const who = d === 'run' ? 'the test runner' : fileOf.get(d) ?? d;
  process.stderr.write(`run-tests: FAIL ${who} left in its temporary directory: ${left.join(', ')}\n`);
}
rmSync(runTmp, { recursive: true, force: true, maxRetries: 3 });
const status = r.status ?? (r.signal === 'SIGINT' ? 130 : 1);
process.exit(status || (leaks.length ? 1 : 0));
