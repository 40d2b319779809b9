/**
 * The option declarations (contract 5): values, ranges, lists and messages derive from one spec; a
 * renamed option changes its spec's spelling and every message follows; every command of the CLI takes
 * its options from specs whose defaults pass their own checks, without two options of one name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import ts from 'typescript';
import { OptionError, checkOption, describeRange, flag, option, type OptionSpec } from '../src/runtime/options.ts';
import { checkConfigKeys, checkPaths, valuesOf, type DefinedCommand } from '../src/cli/options.ts';
import { COMMANDS } from '../src/cli/commands/index.ts';
import { GLOBAL_OPTIONS } from '../src/cli/common.ts';
import { UserError } from '../src/runtime/errors.ts';
import { scratchDir } from './scratch.ts';

const BATCH = option({ name: 'microBatch', option: 'micro-batch', type: 'integer', min: 1, default: 8, help: 'prompts per micro-batch' });
const SIGMA = option({ name: 'sigma', option: 'sigma', type: 'number', above: 0, auto: true, default: 8, help: 'bandwidth' });
const COUNTS = option({ name: 'remove', option: 'remove', type: 'integer', min: 0, list: true, default: '0,1', help: 'counts' });
const MODE = option({ name: 'mode', option: 'mode', type: 'choice', choices: ['a', 'b'] as const, help: 'mode' });
const FLAG = option({ name: 'blend', option: 'blend', type: 'boolean', help: 'blend' });
const SPECS = [BATCH, SIGMA, COUNTS, MODE, FLAG] as const;

/** The message of the OptionError `f` throws (and that it names `spec`). */
function messageOf(f: () => unknown, spec: OptionSpec): string {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof OptionError, `not an OptionError: ${e}`);
    assert.equal(e.option, spec.name);
    return e.message;
  }
  assert.fail('no error');
}

test('values are typed and checked by their spec: integers, numbers or auto, lists, choices, booleans, defaults', () => {
  const v = valuesOf(SPECS, { 'micro-batch': '4', sigma: 'auto', remove: '0, 2,4', mode: 'b', blend: false }, []);
  assert.deepEqual(v, { microBatch: 4, sigma: 'auto', remove: [0, 2, 4], mode: 'b', blend: false });
  assert.deepEqual(valuesOf(SPECS, { 'micro-batch': 8, sigma: 0.5 }, []), { microBatch: 8, sigma: 0.5 });
  const cases: [OptionSpec, unknown, RegExp][] = [
    [BATCH, '0', /^--micro-batch 0: must be a positive integer$/],
    [BATCH, '1.5', /^--micro-batch 1\.5: must be a positive integer$/],
    [BATCH, '0x10', /^--micro-batch 0x10: must be a positive integer$/],
    // past 2^53 − 1 digits no longer name one number (2^53 + 1 reads as 2^53)
    [BATCH, '9007199254740992', /^--micro-batch 9007199254740992: must be a positive integer up to 9007199254740991$/],
    [BATCH, '99999999999999999999999', /^--micro-batch 99999999999999999999999: must be a positive integer up to 9007199254740991$/],
    [BATCH, 2 ** 60, /^--micro-batch 1152921504606847000: must be a positive integer up to 9007199254740991$/], // a --config file's number
    [COUNTS, '1,9007199254740993', /^--remove 1,9007199254740993: must be an integer >= 0 up to 9007199254740991$/],
    [SIGMA, '0', /^--sigma 0: must be a number > 0 or auto$/],
    [SIGMA, 'Infinity', /^--sigma Infinity: must be a number > 0 or auto$/],
    [SIGMA, Infinity, /^--sigma Infinity: must be a number > 0 or auto$/], // a --config file's 1e400
    [COUNTS, '0,,2', /^--remove 0,,2: expected a comma-separated list without empty items, e.g. 0,1$/],
    [COUNTS, '0,x', /^--remove 0,x: must be an integer >= 0$/],
    [MODE, 'c', /^--mode c: must be one of a, b$/],
    [FLAG, 'yes', /^--blend yes: must be true or false$/],
  ];
  for (const [spec, value, want] of cases) assert.match(messageOf(() => checkOption(spec, value), spec), want);
  assert.equal(describeRange(option({ name: 'a', option: 'a', type: 'number', min: 0, max: 1, help: '' })), 'a number from 0 to 1');
});

test('integer options whose values feed 32-bit seeds or Node timers say so by their range; --dims past any prompt count names the prompts', async () => {
  const { SAMPLING_SEED } = await import('../src/model/options.ts');
  const { CALIBRATION_SEED, SEEDED_CALIBRATION_SEED } = await import('../src/compress/options.ts');
  const { LOCK_DURATION, STALLED_INTERVAL } = await import('../src/queue/options.ts');
  for (const spec of [SAMPLING_SEED, SEEDED_CALIBRATION_SEED]) {
    assert.equal(checkOption(spec, '4294967295'), 4294967295);
    assert.match(messageOf(() => checkOption(spec, '4294967296'), spec), /^--seed 4294967296: must be an integer from 0 to 4294967295$/); // would draw what --seed 0 draws
  }
  // compress's and sweep's --seed also feeds --protocol released's Python generator, which takes any safe integer:
  // the 32-bit cap is the mka draw's own (test/python-random.test.ts)
  assert.equal(checkOption(CALIBRATION_SEED, String(2 ** 53 - 1)), 2 ** 53 - 1);
  assert.match(messageOf(() => checkOption(CALIBRATION_SEED, String(2 ** 53)), CALIBRATION_SEED), /^--seed 9007199254740992: must be an integer >= 0 up to 9007199254740991$/);
  assert.match(messageOf(() => checkOption(CALIBRATION_SEED, '-1'), CALIBRATION_SEED), /^--seed -1: must be an integer >= 0$/);
  for (const spec of [LOCK_DURATION, STALLED_INTERVAL]) {
    assert.match(messageOf(() => checkOption(spec, '2147483648'), spec), new RegExp(`^--${spec.option} 2147483648: must be an integer from 1 to 2147483647$`)); // Node would fire it after 1 ms
  }
  const { similarityOptionsFor } = await import('../src/pipeline/analyse.ts');
  const { DIMS } = await import('../src/compress/similarity/options.ts');
  let msg = '';
  assert.throws(() => similarityOptionsFor(12, { data: 'mmlu', similarity: { dims: Number.MAX_SAFE_INTEGER } }), (e: Error) => e instanceof UserError && !!(msg = e.message));
  assert.ok(!msg.includes(`${Number.MAX_SAFE_INTEGER} samples`), msg); // not the check that holds whatever the prompt count
  assert.match(msg, new RegExp(`^similarity options: ${flag(DIMS)} 9007199254740991: must be an integer in 1\\.\\.11 for 12 samples: 12 calibration prompts are too few`));
});

test('required, empty, repeated, null and --config booleans are refused naming the option', () => {
  const MODEL = option({ name: 'model', option: 'model', type: 'string', required: true, help: 'the model directory' });
  assert.match(messageOf(() => valuesOf([MODEL], {}, []), MODEL), /^--model is required: the model directory$/);
  assert.match(messageOf(() => valuesOf([MODEL], { model: '' }, ['--model=']), MODEL), /^--model is empty/);
  assert.match(messageOf(() => valuesOf([MODEL], { model: ['a', 'b'] }, []), MODEL), /^--model is given more than once/);
  assert.match(messageOf(() => valuesOf([MODEL], { model: null }, []), MODEL), /^--model has no value/);
  assert.match(messageOf(() => valuesOf([FLAG], { blend: false }, ['--blend=maybe']), FLAG), /^--blend=maybe: must be true or false/);
  assert.match(messageOf(() => valuesOf([FLAG], { blend: true }, [], { blend: 'yes' }), FLAG), /^--blend "yes" in --config: must be true or false/);
});

test('a renamed option changes its spec only: every message names the new spelling', () => {
  const renamed = { ...BATCH, option: 'prompts-per-batch' } as const;
  assert.equal(flag(renamed), '--prompts-per-batch');
  assert.match(messageOf(() => valuesOf([renamed], { 'prompts-per-batch': '0' }, ['--prompts-per-batch', '0']), renamed), /^--prompts-per-batch 0: must be a positive integer$/);
  assert.deepEqual(valuesOf([renamed], { 'prompts-per-batch': '3' }, []), { microBatch: 3 }, 'the library key stays');
});

test('paths: inputs must exist as their kind; a --config key the command lacks names the file and the nearest option', () => {
  const dir = scratchDir('options');
  const file = join(dir, 'f.txt');
  writeFileSync(file, 'x');
  const DIR = option({ name: 'data', option: 'data', type: 'string', path: 'directory', help: '' });
  const FILE = option({ name: 'calibrationFile', option: 'calibration', type: 'string', path: 'file', help: '' });
  checkPaths([DIR, FILE], { data: dir, calibrationFile: file });
  assert.match(messageOf(() => checkPaths([DIR], { data: file }), DIR), /--data is a file, but must be a directory$/);
  assert.match(messageOf(() => checkPaths([FILE], { calibrationFile: dir }), FILE), /--calibration is a directory, but must be a file$/);
  assert.match(messageOf(() => checkPaths([FILE], { calibrationFile: join(dir, 'nope') }), FILE), /--calibration not found; give an existing file$/);
  assert.throws(() => checkConfigKeys({ modle: 'x' }, 'c.yaml', 'info', ['model', 'json']), (e: unknown) =>
    e instanceof UserError && e.message === 'c.yaml: --config key modle (did you mean model?) is not an option of mka info (see mka info --help)');
  assert.doesNotThrow(() => checkConfigKeys({ model: 'x' }, 'c.yaml', 'info', ['model']));
});

/** Every command of the CLI, as defineCommand declared it (a parent's subcommands: those its builder registers). */
async function definedCommands(): Promise<DefinedCommand[]> {
  const defined: DefinedCommand[] = [];
  const collect = (m: unknown): void => {
    if (m && typeof m === 'object' && 'def' in m) defined.push(m as DefinedCommand);
  };
  for (const c of COMMANDS) {
    const m = await c.load() as unknown as Record<string, unknown>;
    if ('def' in m) collect(m);
    else {
      // a parent (eval, export, queue): its subcommands are registered in its builder
      const subs: unknown[] = [];
      const fake = { command: (sub: unknown) => { subs.push(sub); return fake; }, demandCommand: () => fake };
      (m.builder as (y: unknown) => unknown)(fake);
      assert.ok(subs.length > 0, `${c.command}: neither defined from specs nor a parent of commands`);
      subs.forEach(collect);
      assert.equal(subs.filter((s) => !(s && typeof s === 'object' && 'def' in s)).length, 0, `${c.command}: a subcommand not defined from specs`);
    }
  }
  return defined;
}

test('every command takes its options from specs: unique names and spellings, help, defaults that pass their own checks', async () => {
  const defined = await definedCommands();
  assert.ok(defined.length >= 15, `${defined.length} commands`);
  for (const { def } of defined) {
    const names = def.options.map((s) => s.name), spellings = def.options.map((s) => s.option);
    assert.equal(new Set(names).size, names.length, `${def.command}: two options fill ${names.find((n, i) => names.indexOf(n) !== i)}`);
    assert.equal(new Set(spellings).size, spellings.length, `${def.command}: --${spellings.find((n, i) => spellings.indexOf(n) !== i)} declared twice`);
    for (const s of def.options) {
      assert.ok(s.help.length > 5, `${def.command} --${s.option}: no help`);
      if (s.default !== undefined) assert.doesNotThrow(() => checkOption(s, s.default), `${def.command} --${s.option}: its default ${String(s.default)} fails its own check`);
      if (s.type === 'choice') assert.ok(s.choices && s.choices.length > 0, `${def.command} --${s.option}: a choice without choices`);
      if (s.type === 'integer') {
        assert.throws(() => checkOption(s, String(2 ** 53)), (e: Error) => e instanceof OptionError && new RegExp(`^--${s.option} ${2 ** 53}: must be .*(up to|to) \\d+$`).test(e.message),
          `${def.command} --${s.option}: 2^53 is not refused with its range`);
      }
    }
  }
});

/** Options of programs other than mka that src/ spells: file → the literals allowed there and why. */
const OTHER_PROGRAMS: Record<string, Record<string, string>> = {
  'src/queue/worker.ts': { '--import': "node's flag that loads tsx into a forked worker" },
  'src/gguf/checkpoint.ts': { '--allow-requantize': "llama.cpp's llama-quantize, which converts a GGUF of types mka does not read" },
  'src/runtime/collect.ts': { '--expose-gc': "V8's flag that gives the gc function (set with v8.setFlagsFromString)" },
  'src/io/parquet.ts': { '--max-old-space-size': "node's heap limit for the parquet decoder process", '--stack-size': "node's stack size for the parquet decoder process" },
};

/** The `--option` spellings in the string and template literals of a source (comments and help lines aside), with their lines. */
export function spelledOptions(text: string): { literal: string; line: number }[] {
  const sf = ts.createSourceFile('file.ts', text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: { literal: string; line: number }[] = [];
  const visit = (node: ts.Node): void => {
    const isHelp = ts.isPropertyAssignment(node) && ts.isIdentifier(node.name) && node.name.text === 'help';
    if (isHelp) return; // an option's help line may name other options
    let texts: string[] = [];
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) texts = [node.text];
    else if (ts.isTemplateExpression(node)) texts = [node.head.text, ...node.templateSpans.map((s) => s.literal.text)];
    for (const t of texts) {
      for (const m of t.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)) {
        found.push({ literal: m[0], line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

test('no code below src/cli/ spells an option: messages name options through their specs (flag(spec))', () => {
  const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
  const src = join(process.cwd(), 'src');
  const bad: string[] = [];
  for (const file of files(src).filter((f) => !f.startsWith(join(src, 'cli') + sep))) {
    const rel = relative(process.cwd(), file).split(sep).join('/');
    for (const { literal, line } of spelledOptions(readFileSync(file, 'utf8'))) {
      if (!OTHER_PROGRAMS[rel]?.[literal]) bad.push(`${rel}:${line}: ${literal}`);
    }
  }
  assert.deepEqual(bad, [], 'write flag(SPEC) (src/runtime/options.ts) with the option\'s spec instead');
  // the scan sees messages in both kinds of literal, and leaves comments and help lines alone
  const sample = [
    'throw new UserError(`${x}: choose another --out`);',
    "log('use --fresh');",
    '// --comment',
    "const S = option({ name: 'a', option: 'a', type: 'string', help: 'instead of --text' });",
    'const ok = `${flag(OUT)} and a-b--c`;',
  ].join('\n');
  assert.deepEqual(spelledOptions(sample), [{ literal: '--out', line: 1 }, { literal: '--fresh', line: 2 }]);
});

/** `--x` spellings of other programs that help texts quote: spelling → why. */
const OTHER_PROGRAMS_IN_HELP: Record<string, string> = { '--log_samples': 'lm-eval\'s option, whose output layout --log-samples writes' };

test('help texts and examples name only options that exist, so a renamed option whose old spelling is left in help fails here', async () => {
  const defined = await definedCommands();
  const globals = GLOBAL_OPTIONS.map((s) => s.option);
  const everywhere = new Set([...defined.flatMap(({ def }) => def.options.map((s) => s.option)), ...globals, 'help']);
  const stale: string[] = [];
  for (const { def } of defined) {
    const own = new Set([...def.options.map((s) => s.option), ...globals, 'help']);
    // an option's help or the command's text may name another command's option; an example runs this command
    const texts: [string, string, Set<string>][] = [
      ...def.options.map((s): [string, string, Set<string>] => [`--${s.option}'s help`, s.help, everywhere]),
      ['describe', def.describe, everywhere], ['epilogue', def.epilogue ?? '', everywhere],
      ...(def.examples ?? []).map(([line, what]): [string, string, Set<string>] => [`example "${line}"`, `${line} ${what}`, own]),
    ];
    for (const [where, text, known] of texts) {
      for (const [spelled] of text.matchAll(/(?<![\w-])--[a-z][a-z0-9_-]*/g)) {
        const name = spelled.slice(2);
        if (!known.has(name) && !known.has(name.replace(/^no-/, '')) && !OTHER_PROGRAMS_IN_HELP[spelled]) stale.push(`mka ${def.command} ${where}: ${spelled}`);
      }
    }
  }
  assert.deepEqual(stale, [], 'name options through their specs, or update the help after a rename');
});

test('a queue job\'s sweep options are checked by the specs the command line checks them with', async () => {
  const { checkJob } = await import('../src/queue/payload.ts');
  const root = scratchDir('job');
  const sweep = {
    model: 'm', data: 'd', out: 'o', methods: ['mka', 'reverse'], remove: [0, 2], ntrain: 5, batchSize: 16, seed: 1,
    representation: 'padded', similarity: { sigma: 'auto', alpha: 0.5, kEntropy: 3 }, ppl: { text: 't.txt', seqLen: 64 },
  };
  const job = (s: Record<string, unknown>) => ({ kind: 'calibration', sweep: { ...sweep, ...s } });
  assert.equal(checkJob(job({}), root).sweep.ntrain, 5);
  const refused = (s: Record<string, unknown>, want: RegExp) =>
    assert.throws(() => checkJob(job(s), root), (e: unknown) => e instanceof UserError && want.test(e.message), JSON.stringify(s));
  refused({ ntrain: -1 }, /^job data refused: sweep\.ntrain: --ntrain -1: must be an integer >= 0$/);
  refused({ batchSize: 0 }, /sweep\.batchSize: --batch-size 0: must be a positive integer/);
  refused({ representation: 'all' }, /sweep\.representation: --representation all: must be one of padded, last, mean/);
  refused({ similarity: { alpha: 2 } }, /sweep\.similarity\.alpha: --alpha 2: must be a number from 0 to 1/);
  refused({ ppl: { text: 't.txt', stride: 0 } }, /sweep\.ppl\.stride: --stride 0: must be a positive integer/);
  refused({ methods: ['mka', 'nope'] }, /sweep\.methods: --methods mka,nope: must be one of/);
  refused({ methods: 'mka' }, /^job data refused: sweep\.methods must be a list$/);
  refused({ model: undefined }, /^job data refused: no sweep\.model$/);
  refused({ calibrationFile: '../outside.txt' }, /sweep\.calibrationFile \.\.\/outside\.txt lies outside the worker's root/);
  // method parameters and --fit-lambda, by the methods' own declarations
  assert.deepEqual(checkJob(job({ params: { mka: { strategy: 'adjacent' } }, fitLambda: true }), root).sweep.params, { mka: { strategy: 'adjacent' } });
  refused({ fitLambda: 'yes' }, /sweep\.fitLambda: --fit-lambda yes: must be true or false/);
  refused({ params: { mka: { strategy: 'sideways' } } }, /^job data refused: sweep\.params\.mka: --strategy sideways: must be one of .*; enqueue the sweep again with this mka$/);
  refused({ params: { mka: { nope: 1 } } }, /^job data refused: sweep\.params\.mka: mka has no parameter nope; its parameters: --/);
  refused({ params: { nomethod: {} } }, /^job data refused: sweep\.params\.nomethod: no method nomethod \(methods: mka, /);
  refused({ params: ['mka'] }, /sweep\.params must map method names/);
});

test('a sweep\'s key takes its option fields from the specs (declared defaults) and keeps the bytes existing sweep directories hold', async () => {
  const { sweepKey } = await import('../src/sweep/context.ts');
  const base = { model: 'm', data: 'd', methods: ['mka'], remove: [0, 2], ntrain: 5, out: 'o' };
  const stored = '{"model":"m","data":"d","ntrain":5,"limit":null,"subjects":null,"calibration":{"data":"d","file":null,"subjects":null,"perSubject":"auto","seed":1,"representation":"padded"},"similarity":{},"strategy":"last-pair","blendNorms":false}';
  assert.equal(sweepKey(base), stored, 'the key a sweep of an earlier mka wrote');
  assert.equal(sweepKey({ ...base, seed: 1, representation: 'padded', protocol: 'mka', fitLambda: false }), stored, 'defaults given are defaults');
  const set = JSON.parse(sweepKey({ ...base, seed: 3, representation: 'last', protocol: 'released', fitLambda: true, perSubject: 2, subjects: 4, calibrationFile: 'x.txt', limit: 3, evalSubjects: ['a'] }));
  assert.deepEqual(set.calibration, { data: 'd', file: 'x.txt', subjects: 4, perSubject: 2, seed: 3, representation: 'last', protocol: 'released' });
  assert.deepEqual([set.limit, set.subjects, set.fitLambda], [3, ['a'], true]);
});

test('the eval run keys take their option fields from the specs and keep the bytes existing results directories hold', async () => {
  const { keyFields } = await import('../src/runtime/options.ts');
  const { MMLU_EVAL_KEY, MMLU_KEY } = await import('../src/eval/mmlu/options.ts');
  const { TASK_KEY, TASK_KEY_FIELDS } = await import('../src/eval/tasks/options.ts');
  const { PPL_KEY, PPL_KEY_FIELDS } = await import('../src/eval/ppl/options.ts');
  // the fields an earlier mka wrote by hand, in its order (mmlu/evaluate.ts, tasks/evaluate.ts, ppl/evaluate.ts)
  assert.equal(JSON.stringify(keyFields(MMLU_KEY, { ntrain: 5 })), '{"ntrain":5,"limit":null,"answerTokens":"letter"}');
  assert.equal(JSON.stringify(keyFields(MMLU_KEY, { ntrain: 0, limit: 3, answerTokens: 'space' })), '{"ntrain":0,"limit":3,"answerTokens":"space"}');
  assert.equal(JSON.stringify(keyFields(MMLU_EVAL_KEY, { bos: true })), '{"quantize":"none","bos":true}');
  assert.equal(JSON.stringify(keyFields(MMLU_EVAL_KEY, { quantize: 'uint8', bos: false })), '{"quantize":"uint8","bos":false}');
  assert.equal(JSON.stringify(keyFields(TASK_KEY, { numFewshot: 0, limit: null, maxLength: 64 }, TASK_KEY_FIELDS)), '{"shots":0,"limit":null,"maxLength":64}');
  assert.equal(JSON.stringify(keyFields(PPL_KEY, { seqLen: 64, stride: 32 }, PPL_KEY_FIELDS)), '{"seq_len":64,"stride":32}');
});
