/**
 * The import layering of src/: each folder may import only the folders listed for it below, so shared
 * abstractions stay below their users (runtime at the bottom, the CLI at the top), and no files import
 * each other in a circle (type-only imports included). Imports are read by the TypeScript parser, so
 * every form counts: static, type-only, re-exports, side-effect, dynamic `import()` and `import('…')`
 * types, with any quotes, a `.js` or no extension. A new import that runs the other way, a circle, a
 * dynamic import whose module is not a literal, a new folder missing from the table, src/ importing
 * scripts/ or test/, or a test importing a benchmark (scripts/bench/) fails here with the file and import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

const ROOT = process.cwd();
const SRC = join(ROOT, 'src');

/** Folder of src/ → the folders of src/ it may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  runtime: [],
  io: ['runtime'],
  gguf: ['runtime', 'io'],
  tokenizer: ['runtime', 'io', 'gguf'],
  model: ['runtime', 'io', 'tokenizer', 'gguf'],
  weights: ['runtime', 'io', 'tokenizer', 'model'],
  convert: ['runtime', 'io', 'tokenizer', 'model'],
  eval: ['runtime', 'io', 'tokenizer', 'model', 'weights'],
  compress: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'eval'],
  export: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'gguf', 'compress'],
  report: ['runtime', 'io'],
  hub: ['runtime', 'io', 'model', 'eval'],
  serve: ['runtime', 'io', 'tokenizer'],
  quant: ['runtime', 'io', 'model', 'weights'],
  pipeline: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'eval', 'compress', 'quant'],
  sweep: ['runtime', 'io', 'tokenizer', 'model', 'weights', 'eval', 'compress', 'quant', 'pipeline', 'export', 'report'],
  queue: ['runtime', 'io', 'model', 'sweep'],
  cli: ['runtime', 'io', 'gguf', 'tokenizer', 'model', 'weights', 'convert', 'eval', 'compress', 'quant', 'pipeline', 'export', 'report', 'hub', 'serve', 'sweep', 'queue'],
};

/** The src/ files that may import a module computed at run time, and why (a computed module's layer cannot be checked). */
const COMPUTED_IMPORTS: Record<string, string> = {
  'src/runtime/backend.ts': 'the optional @tensorflow/tfjs-node packages, which may be absent (a literal would not typecheck)',
  'src/runtime/tf.ts': 'tfjs packages, each loaded by name with require (requireTfjs), so that Node does not parse them for ES module exports',
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/** One import of a source file: its module specifier (null when a dynamic import's module is not a literal) and line. */
export interface ImportRef { spec: string | null; line: number }

/**
 * Every import of a TypeScript source, as the compiler parses it: `import … from`, `import type`,
 * `export … from`, `import 'x'`, `import x = require('x')`, `import('x')` (code or type) and `require('x')`.
 */
export function importsOf(text: string, fileName = 'file.ts'): ImportRef[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const refs: ImportRef[] = [];
  const add = (node: ts.Node, expr: ts.Node | undefined) => {
    const spec = expr && (ts.isStringLiteral(expr) || ts.isNoSubstitutionTemplateLiteral(expr)) ? expr.text : null;
    refs.push({ spec, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      if (node.moduleSpecifier) add(node, node.moduleSpecifier);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression);
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      add(node, ts.isLiteralTypeNode(arg) ? arg.literal : undefined);
    } else if (ts.isCallExpression(node) && (node.expression.kind === ts.SyntaxKind.ImportKeyword
      || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))) {
      add(node, node.arguments[0]);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return refs;
}

/** The file a relative specifier names: as written, a `.js` written for its `.ts`, or without an extension; null if none. */
export function resolveImport(from: string, spec: string): string | null {
  const base = resolve(dirname(from), spec);
  const candidates = [base, base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? null;
}

/** Every relative import of `files`, resolved: [file, import, target or null when it names no file]. */
function relativeImports(files: string[]): [string, ImportRef, string | null][] {
  return files.flatMap((file) => importsOf(readFileSync(file, 'utf8'), file)
    .filter((r) => r.spec === null || r.spec.startsWith('.'))
    .map((r): [string, ImportRef, string | null] => [file, r, r.spec === null ? null : resolveImport(file, r.spec)]));
}

const where = (file: string, r: ImportRef) => `${relative(ROOT, file)}:${r.line} imports ${r.spec === null ? 'a computed module' : `'${r.spec}'`}`;

const top = (path: string, base: string): string | null => {
  const rel = relative(base, path);
  return rel.startsWith('..') ? null : rel.split(sep)[0];
};

/** Why the import of `target` by src/ file `file` breaks the layering, or null. */
export function layerViolation(file: string, target: string, src = SRC): string | null {
  const from = top(file, src)!;
  const to = top(target, src);
  if (to === null) return 'src/ imports nothing outside src/ (scripts/ and test/ import src/, not the reverse)';
  if (to === from || (ALLOWED[from] ?? []).includes(to)) return null;
  return `${from}/ may import ${ALLOWED[from]?.join(', ') || 'no other folder'}; move the shared code below both or import the other way`;
}

/** The import circles of a file graph (each a strongly connected component of more than one file, or a file importing itself). */
export function circles(graph: Map<string, Set<string>>): string[][] {
  // Tarjan's algorithm, iterative so a deep chain cannot overflow the stack
  const index = new Map<string, number>(), low = new Map<string, number>(), onStack = new Set<string>();
  const stack: string[] = [], found: string[][] = [];
  let next = 0;
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: [string, string[]][] = [];
    const open = (v: string) => {
      index.set(v, next); low.set(v, next); next++;
      stack.push(v); onStack.add(v);
      work.push([v, [...(graph.get(v) ?? [])]]);
    };
    open(root);
    while (work.length) {
      const [v, todo] = work[work.length - 1];
      const w = todo.shift();
      if (w !== undefined) {
        if (!index.has(w)) open(w);
        else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const scc: string[] = [];
        let w2: string;
        do {
          w2 = stack.pop()!;
          onStack.delete(w2);
          scc.push(w2);
        } while (w2 !== v);
        if (scc.length > 1 || graph.get(v)?.has(v)) found.push(scc.sort());
      }
    }
  }
  return found;
}

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

test('src/ folders import only the folders below them, and every relative import names a file', () => {
  const bad: string[] = [];
  for (const [file, r, target] of relativeImports(tsFiles(SRC))) {
    if (r.spec === null) {
      if (!(relative(ROOT, file).split(sep).join('/') in COMPUTED_IMPORTS)) bad.push(`${where(file, r)}: write the module as a literal, so that its layer can be checked`);
    }
    else if (target === null) bad.push(`${where(file, r)}: no such file`);
    else {
      const why = layerViolation(file, target);
      if (why) bad.push(`${where(file, r)}: ${why}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('no files of src/ import each other in a circle, type-only imports included', () => {
  const graph = new Map<string, Set<string>>();
  for (const file of tsFiles(SRC)) graph.set(relative(ROOT, file), new Set());
  for (const [file, , target] of relativeImports(tsFiles(SRC))) {
    if (target && target.startsWith(SRC + sep)) graph.get(relative(ROOT, file))!.add(relative(ROOT, target));
  }
  const found = circles(graph).map((c) => c.join(' ↔ '));
  assert.deepEqual(found, [], 'put the shared types or functions in a file that imports none of its users');
});

test('test/ does not import the benchmarks (they import src/ or test support, not the reverse)', () => {
  const bad = relativeImports(tsFiles(join(ROOT, 'test')))
    .filter(([, , target]) => target !== null && top(target, join(ROOT, 'scripts', 'bench')) !== null)
    .map(([file, r]) => `${where(file, r)}: put what both need in src/ or a test/ helper`);
  assert.deepEqual(bad, []);
});

test('the layering check sees every form of import, and refuses an upward one whatever its spelling', () => {
  const text = [
    `import { a } from './a.ts';`,
    `import type { B } from "../model/b.ts";`,
    `export { c } from './c.ts';`,
    `export * from './c2.js';`,
    `import './d.ts';`,
    `const e = await import('../io/e.ts');`,
    'const e2 = await import(`../cli/e2.ts`);',
    `const e3 = await import('../cli/' + name);`,
    `type G = import('../sweep/g.ts').G;`,
    `import h = require('../queue/h');`,
    `import * as tf from '@tensorflow/tfjs';`,
    `import {\n  f,\n} from '../weights/f.ts';`,
    `// import { no } from './comment.ts';`,
    `const s = "import { no } from './string.ts'";`,
  ].join('\n');
  assert.deepEqual(importsOf(text).map((r) => r.spec),
    ['./a.ts', '../model/b.ts', './c.ts', './c2.js', './d.ts', '../io/e.ts', '../cli/e2.ts', null, '../sweep/g.ts', '../queue/h', '@tensorflow/tfjs', '../weights/f.ts']);
  assert.deepEqual(importsOf(text).map((r) => r.line), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

  // An upward import from model/ in each spelling the old pattern test missed resolves to the file and is refused.
  const file = join(SRC, 'model', 'ops.ts');
  for (const spec of ['../cli/main.js', '../cli/main', '../cli/main.ts']) {
    const target = resolveImport(file, spec);
    assert.equal(target, join(SRC, 'cli', 'main.ts'), spec);
    assert.match(layerViolation(file, target!) ?? '', /^model\/ may import runtime, io, tokenizer, gguf;/, spec);
  }
  for (const form of ['import { x } from "../cli/main.ts";', 'const m = await import(`../cli/main.js`);', "export type { Y } from '../cli/main';"]) {
    const [r] = importsOf(form);
    assert.ok(r && r.spec, form);
    assert.ok(layerViolation(file, resolveImport(file, r.spec)!), form);
  }
  assert.equal(layerViolation(file, join(SRC, 'runtime', 'errors.ts')), null);
  assert.match(layerViolation(file, join(ROOT, 'scripts', 'bench.ts')) ?? '', /outside src/);
});

test('the circle check finds a type-only circle of three files and a self-import, and passes a chain', () => {
  const g = (edges: [string, string][]) => {
    const m = new Map<string, Set<string>>();
    for (const [a, b] of edges) {
      if (!m.has(a)) m.set(a, new Set());
      if (!m.has(b)) m.set(b, new Set());
      m.get(a)!.add(b);
    }
    return m;
  };
  assert.deepEqual(circles(g([['a', 'b'], ['b', 'c'], ['c', 'a'], ['c', 'd'], ['e', 'e']])), [['a', 'b', 'c'], ['e']]);
  assert.deepEqual(circles(g([['a', 'b'], ['b', 'c'], ['a', 'c']])), []);
  const chain = g(Array.from({ length: 20000 }, (_, i): [string, string] => [`f${i}`, `f${i + 1}`]));
  assert.deepEqual(circles(chain), []);
});

test('tfjs is loaded through src/runtime/tf.ts, never imported as an ES module (Node would parse its 7 MB of CommonJS bundles for their export names at every start)', () => {
  const files = [SRC, join(ROOT, 'test'), join(ROOT, 'scripts')].flatMap(tsFiles).filter((f) => f !== join(SRC, 'runtime', 'tf.ts'));
  const bad = files.flatMap((f) => importsOf(readFileSync(f, 'utf8'), f)
    .filter((i) => i.spec !== null && /^@tensorflow\/tfjs(-[a-z-]+)?(\/|$)/.test(i.spec)).map((i) => `${relative(ROOT, f)}:${i.line}: ${i.spec}`));
  assert.deepEqual(bad, [], "import { tf } from '../runtime/tf.ts' (a type it does not list yet goes into its namespace tf); other tfjs packages through its requireTfjs");
});

/** tfjs calls that choose or name the backend: the runtime's policy (src/runtime/), asked elsewhere through the backend profile. */
const BACKEND_CALLS = new Set(['getBackend', 'setBackend', 'backend', 'findBackend', 'removeBackend']);

/** The lines of `text` that call a BACKEND_CALLS function of tfjs (`tf.getBackend()`, ...). */
export function backendCalls(text: string): { call: string; line: number }[] {
  const sf = ts.createSourceFile('file.ts', text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: { call: string; line: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && BACKEND_CALLS.has(node.expression.name.text)
      && ts.isIdentifier(node.expression.expression) && node.expression.expression.text === 'tf') {
      found.push({ call: `tf.${node.expression.name.text}()`, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

test('only src/runtime/ chooses or names the tfjs backend: the rest asks the backend profile (runtime/profile.ts)', () => {
  const bad = tsFiles(SRC).filter((f) => !f.startsWith(join(SRC, 'runtime') + sep))
    .flatMap((f) => backendCalls(readFileSync(f, 'utf8')).map((c) => `${relative(ROOT, f)}:${c.line}: ${c.call}`));
  assert.deepEqual(bad, [], 'ask currentProfile() (layout, kernels, products, gradients, memory), or move the backend choice into src/runtime/');
  assert.deepEqual(backendCalls('if (tf.getBackend() === "wasm") x();\nawait tf.setBackend(b);\nconst s = "tf.getBackend()";\n// tf.backend()')
    .map((c) => c.line), [1, 2]);
});
