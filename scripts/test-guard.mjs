// Loaded into every test file's process by scripts/run-tests.mjs (`--import`): a test that runs and
// makes no assertion fails, and so does a file that registers no test. It counts calls of node:assert's
// functions (assert.equal, assert.ok, assert.rejects, ...; `assert(x)` itself cannot be counted: write
// assert.ok(x)). A test whose body calls t.skip() or t.todo(), or that runs subtests, is exempt (each
// subtest is checked itself); so is a test declared with { skip } or { todo }, whose body never runs.
// In a run of scripts/run-tests.mjs (MKA_TEST_TMP set), the file's process and the processes it starts get
// a temporary directory of their own (TMPDIR), and the file fails when it leaves anything in it.
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { leftovers, makePrivateTmp, privateName, realTmpOf } from './test-tmp.mjs';

const runTmp = process.env.MKA_TEST_TMP;
if (runTmp && process.env.NODE_TEST_CONTEXT && process.argv[1]) {
  const file = process.argv[1];
  const own = join(runTmp, privateName(file, resolve(fileURLToPath(new URL('..', import.meta.url)))));
  makePrivateTmp(own, realTmpOf(runTmp));
  process.env.TMPDIR = own;
  process.on('exit', () => {
    const left = leftovers(own);
    if (!left.length) return;
    process.stderr.write(`${file}: left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in its temporary directory ` +
      `(${left.slice(0, 5).join(', ')}${left.length > 5 ? ', ...' : ''}): make temporary paths with scratchDir (test/scratch.ts)\n`);
    process.exitCode = 1;
  });
}

const require = createRequire(import.meta.url);
const nodeTest = require('node:test');
const counter = { assertions: 0, tests: 0 };

const base = require('node:assert');
const originals = { ...base };
for (const target of [base, require('node:assert/strict')]) {
  for (const [name, value] of Object.entries(target)) {
    if (typeof value !== 'function' || /^[A-Z]/.test(name) || name === 'strict') continue;
    target[name] = function counted(...args) {
      counter.assertions++;
      // assert.match tells itself from doesNotMatch by comparing with the exported function: restore both for the call
      const shadowed = name === 'match' || name === 'doesNotMatch';
      if (shadowed) Object.assign(base, { match: originals.match, doesNotMatch: originals.doesNotMatch });
      try {
        return value.apply(this, args);
      } finally {
        if (shadowed) Object.assign(base, { match: wrappedMatch, doesNotMatch: wrappedDoesNotMatch });
      }
    };
  }
}
const wrappedMatch = base.match, wrappedDoesNotMatch = base.doesNotMatch;

/** `fn` wrapped so that it fails when it returns without an assertion, a skip or a subtest. */
function guarded(name, fn) {
  if (typeof fn !== 'function' || fn.length > 1) return fn; // a callback-style test (t, done): not checked
  return async function guardedTest(t, ...rest) {
    counter.tests++;
    const before = counter.assertions;
    let exempt = false;
    if (t && typeof t === 'object') {
      for (const k of ['skip', 'todo']) {
        const orig = t[k];
        if (typeof orig === 'function') t[k] = (...a) => { exempt = true; return orig.apply(t, a); };
      }
      const sub = t.test;
      if (typeof sub === 'function') t.test = (...a) => { exempt = true; return sub.apply(t, wrapArgs(a)); };
    }
    const result = await fn.call(this, t, ...rest);
    if (!exempt && counter.assertions === before) {
      throw new Error(`test "${name}" made no assertion: assert what it checks, or skip it with a reason ({ skip: 'why' } or t.skip('why'))`);
    }
    return result;
  };
}

/** test()'s arguments (name?, options?, fn?) with fn guarded. */
function wrapArgs(args) {
  const a = [...args];
  const i = a.findIndex((x) => typeof x === 'function');
  if (i >= 0) a[i] = guarded(typeof a[0] === 'string' ? a[0] : a[i].name || '(anonymous)', a[i]);
  return a;
}

function wrapRunner(orig) {
  const wrapped = function test(...args) { counter.registered = true; return orig.apply(this, wrapArgs(args)); };
  for (const k of Object.keys(orig)) wrapped[k] = orig[k];
  for (const k of ['skip', 'todo', 'only']) {
    if (typeof orig[k] === 'function') wrapped[k] = (...args) => { counter.registered = true; return orig[k](...(k === 'only' ? wrapArgs(args) : args)); };
  }
  return wrapped;
}

nodeTest.test = wrapRunner(nodeTest.test);
nodeTest.it = wrapRunner(nodeTest.it);
syncBuiltinESMExports();

process.on('exit', (code) => {
  if (code === 0 && !counter.registered) {
    process.stderr.write(`${process.argv[1]}: this test file registers no test\n`);
    process.exitCode = 1;
  }
});
