/**
 * The import layering of src/: each folder may import only the folders listed for it below, so shared
 * abstractions stay below their users (runtime at the bottom, the CLI at the top). A new import that
 * runs the other way, a new folder missing from the table, src/ importing scripts/ or test/, or a test
 * importing a benchmark (scripts/bench/) fails here with the offending file and import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const ROOT = process.cwd();
const SRC = join(ROOT, 'src');

/** Folder of src/ → the folders of src/ it may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  runtime: [],
  io: ['runtime'],
  tokenizer: ['runtime', 'io'],
  model: ['runtime', 'io', 'tokenizer'],
  weights: ['runtime', 'io', 'model'],
  convert: ['runtime', 'io', 'tokenizer', 'model'],
  eval: ['runtime', 'io', 'tokenizer', 'model', 'weights'],
  compress: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'eval'],
  export: ['runtime', 'io', 'tokenizer', 'model', 'weights'],
  report: ['runtime', 'io'],
  hub: ['runtime', 'io', 'eval'],
  serve: ['runtime', 'io', 'tokenizer'],
  quant: ['runtime', 'io', 'model', 'weights'],
  pipeline: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'eval', 'compress', 'quant'],
  sweep: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'eval', 'compress', 'quant', 'pipeline', 'export', 'report'],
  queue: ['runtime', 'io', 'model', 'sweep'],
  cli: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'convert', 'eval', 'compress', 'quant', 'pipeline', 'export', 'report', 'hub', 'serve', 'sweep', 'queue'],
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/** Relative module specifiers of a source file: static imports and re-exports, side-effect and dynamic imports. */
export function relativeImports(text: string): string[] {
  const specs = [...text.matchAll(/\bfrom\s*'([^']+)'|\bimport\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
  return specs.filter((s) => s.startsWith('.'));
}

/** Every import of `files` that `rule` refuses, as 'file imports spec: reason'. */
function violations(files: string[], rule: (file: string, target: string) => string | null): string[] {
  const bad: string[] = [];
  for (const file of files) {
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const why = rule(file, resolve(dirname(file), spec));
      if (why) bad.push(`${relative(ROOT, file)} imports '${spec}': ${why}`);
    }
  }
  return bad;
}

const top = (path: string, base: string): string | null => {
  const rel = relative(base, path);
  return rel.startsWith('..') ? null : rel.split(sep)[0];
};

test('every src/ folder is in the layering table, and the table has no cycle', () => {
  const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory() && tsFiles(join(SRC, e.name)).length).map((e) => e.name).sort();
  assert.deepEqual(folders, Object.keys(ALLOWED).sort(), 'add the new src/ folder to ALLOWED in test/layering.test.ts (what may it import?)');
  const state = new Map<string, 'open' | 'done'>();
  const visit = (f: string, path: string[]) => {
    assert.notEqual(state.get(f), 'open', `the layering table has a cycle: ${[...path, f].join(' → ')}`);
    if (state.get(f) === 'done') return;
    state.set(f, 'open');
    for (const g of ALLOWED[f]) {
      assert.ok(g in ALLOWED, `ALLOWED.${f} names '${g}', not a folder of src/`);
      visit(g, [...path, f]);
    }
    state.set(f, 'done');
  };
  for (const f of Object.keys(ALLOWED)) visit(f, []);
});

test('src/ folders import only the folders below them', () => {
  const bad = violations(tsFiles(SRC), (file, target) => {
    const from = top(file, SRC)!;
    const to = top(target, SRC);
    if (to === null) return relative(ROOT, target).startsWith(`node_modules${sep}`) ? null : 'src/ imports nothing outside src/ (scripts/ and test/ import src/, not the reverse)';
    if (to === from || !target.endsWith('.ts') || ALLOWED[from].includes(to)) return null;
    return `${from}/ may import ${ALLOWED[from].join(', ') || 'no other folder'}; move the shared code below both or import the other way`;
  });
  assert.deepEqual(bad, []);
});

test('test/ does not import the benchmarks (they import src/ or test support, not the reverse)', () => {
  const bad = violations(tsFiles(join(ROOT, 'test')), (_file, target) =>
    top(target, join(ROOT, 'scripts', 'bench')) !== null ? 'put what both need in src/ or a test/ helper' : null);
  assert.deepEqual(bad, []);
});

test('the layering check sees every kind of import', () => {
  const text = `import { a } from './a.ts';\nimport type { B } from '../model/b.ts';\nexport { c } from './c.ts';\nimport './d.ts';\nconst e = await import('../io/e.ts');\nimport * as tf from '@tensorflow/tfjs';\nimport {\n  f,\n} from '../weights/f.ts';`;
  assert.deepEqual(relativeImports(text), ['./a.ts', '../model/b.ts', './c.ts', './d.ts', '../io/e.ts', '../weights/f.ts']);
});
