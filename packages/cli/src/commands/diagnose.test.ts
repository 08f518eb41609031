import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as reference from '@bnmlp/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { array } from '../diagnose/arrays.js';
import { CATALOGUE } from '../diagnose/catalogue.js';
import { parseCase } from '../diagnose/case.js';
import type { Diagnosis } from '../diagnose/diagnosis.js';
import { readNamedValues, writeNamedValues } from '../diagnose/files.js';
import { builtBin, runBin } from '../test-support/built-bin.js';
import { cliRoot, repoRoot, tinyCifarDir } from '../test-support/paths.js';
import { CHECK_FLAGS, EXAMPLE_FLAGS, EXPORT_FLAGS, diagnoseHelp } from './diagnose.js';

const tmp = mkdtempSync(join(tmpdir(), 'bnmlp-cli-diagnose-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SMALL = ['--layers', '3', '--hidden', '12,8', '--dims', '10', '--batch', '8', '--bn', '--affine', '--data', tinyCifarDir];

async function bnmlp(args: string[]) {
  const out = { stdout: '', stderr: '' };
  const status = await runCli(['diagnose', ...args], {
    stdout: (t) => void (out.stdout += t),
    stderr: (t) => void (out.stderr += t),
    cwd: tmp,
    env: {},
    deps: { importReference: async () => reference },
  });
  return { status, ...out };
}

describe('bnmlp diagnose --help', () => {
  it('states the file layout of the case and of the answer, every option and every known cause', async () => {
    const { status, stdout, stderr } = await bnmlp(['--help']);
    expect([status, stderr]).toEqual([0, '']);
    expect(stdout).toBe(diagnoseHelp());
    expect((await runCli(['help', 'diagnose'], { stdout: (t) => expect(t).toBe(stdout), stderr: () => {} }))).toBe(0);
    expect((await bnmlp(['check', '--help'])).stdout).toBe(stdout);
    for (const line of [
      'X  n×d, one sample per row',
      'W1 … Wk  dIn×dOut (S = X·W + b)',
      "X' is d×n, Y' is K×n, W' is dOut×dIn with S = W·X + b, b a dOut×1 column",
      'num_W1, num_b1, …            optional: your numeric gradients',
      'h                            optional: their step',
      "format 'bnmlp-diagnose-case', version 1",
    ])
      expect(stdout).toContain(line);
    for (const e of CATALOGUE) expect(stdout).toMatch(new RegExp(`^ {4}${e.name} +${e.title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    for (const f of [...EXPORT_FLAGS, ...CHECK_FLAGS, ...EXAMPLE_FLAGS]) expect(stdout).toContain(`--${f.flag}`);
    const bare = await bnmlp([]);
    expect([bare.status, bare.stdout, bare.stderr]).toEqual([2, '', stdout]);
  });

  it('usage errors exit 2 naming the option', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['fix'], /argument 'subcommand' must be 'export', 'check' or 'example', got 'fix'/],
      [['export', ...SMALL], /option --out must be given/],
      [['export', '--out', 'case.txt'], /option --out must be a file ending in \.npz, \.mat or \.json, got 'case\.txt'/],
      [['export', '--out', 'c.npz', '--affine'], /option --affine must be used with --bn/],
      [['export', '--out', 'c.npz', '--layers', '4', '--hidden', '50,30'], /option --hidden must be 3 widths for --layers 4/],
      [['export', '--out', 'c.npz', '--batch', '30', '--data', tinyCifarDir], /option --batch must be at most 20 \(half the 40 training records/],
      [['check', 'case.npz'], /argument 'CASE YOURS' must be given at least 2 times/],
      [['check', 'a.npz', 'b.npz', '--tolerance', '0'], /option --tolerance must be a finite number > 0/],
      [['example', 'case.npz', '--out', 'x.npz', '--cause', 'typo'], /option --cause must be one of running-statistics, .*, got 'typo'/],
    ];
    for (const [args, message] of cases) {
      const { status, stderr } = await bnmlp(args);
      expect(status, args.join(' ')).toBe(2);
      expect(stderr, args.join(' ')).toMatch(message);
    }
  });
});

describe('bnmlp diagnose export, example, check', () => {
  let rightFile: string;
  beforeAll(async () => {
    for (const ext of ['npz', 'mat', 'json']) {
      const { status, stdout, stderr } = await bnmlp(['export', ...SMALL, '--out', `case.${ext}`]);
      expect(stderr).toBe('');
      expect(status).toBe(0);
      expect(stdout).toContain(`bnmlp diagnose: wrote case.${ext}`);
      expect(stdout).toContain('3-layer MLP 10 → 12 → 8 → 10, batch norm with gamma/beta, eps 0.001, λ = 0.01, batch of 8; J = ');
    }
    // The exact gradients, as a right answer.
    const c = parseCase(readNamedValues(join(tmp, 'case.npz')), 'case.npz');
    const g = reference.costAndGradients(c.net, c.x, c.labels, c.config.lambda).gradients;
    rightFile = join(tmp, 'right.json');
    writeNamedValues(rightFile, new Map(reference.parameters(c.net).map((p) => [p.name, array(p.shape, reference.gradientOf(g, p))])));
  });

  it('writes the same case in all three formats, each with its README and version', () => {
    const cases = ['npz', 'mat', 'json'].map((ext) => parseCase(readNamedValues(join(tmp, `case.${ext}`)), `case.${ext}`));
    for (const c of cases.slice(1)) {
      expect(c.cost).toBe(cases[0].cost);
      expect(Array.from(c.x.data)).toEqual(Array.from(cases[0].x.data));
      expect(c.net.layers.map((l) => Array.from(l.W.data))).toEqual(cases[0].net.layers.map((l) => Array.from(l.W.data)));
    }
    const readme = readNamedValues(join(tmp, 'case.mat')).get('README');
    expect(readme?.kind === 'text' && readme.text).toMatch(/^bnmlp diagnose case, format version 1/);
    expect(readme?.kind === 'text' && readme.text).toContain('W<l> d_in x d_out, S = X W + b');
  });

  it('refuses to overwrite without --force', async () => {
    const again = await bnmlp(['export', ...SMALL, '--out', 'case.npz']);
    expect([again.status, again.stderr]).toEqual([2, "bnmlp diagnose export: option --out must be a new file (pass --force to overwrite), got 'case.npz'\n(see `bnmlp diagnose export --help`)\n"]);
    expect((await bnmlp(['export', ...SMALL, '--out', 'case.npz', '--force'])).status).toBe(0);
  });

  it('check: right gradients exit 0 against every case format', async () => {
    for (const ext of ['npz', 'mat', 'json']) {
      const { status, stdout } = await bnmlp(['check', `case.${ext}`, 'right.json']);
      expect(status, stdout).toBe(0);
      expect(stdout).toMatch(/^RIGHT: every array you gave is right\.$/m);
    }
  });

  it("check: the report's own bug (running statistics) exits 1 naming it, also as --json", async () => {
    expect((await bnmlp(['example', 'case.npz', '--cause', 'running-statistics', '--out', 'theirs.mat', '--layout', 'column-sample'])).status).toBe(0);
    const { status, stdout } = await bnmlp(['check', 'case.npz', 'theirs.mat']);
    expect(status).toBe(1);
    expect(stdout).toContain('1. running-statistics: running statistics in the perturbed forward pass — matches all 10');
    expect(stdout).toMatch(/^WRONG: numeric: running-statistics\.$/m);
    const json = await bnmlp(['check', 'case.npz', 'theirs.mat', '--json']);
    const d = JSON.parse(json.stdout) as Diagnosis;
    expect(json.status).toBe(1);
    expect([d.format, d.passed, d.sides.map((s) => [s.side, s.verdict, s.causes.map((c) => c.name)])]).toEqual([
      'bnmlp-diagnosis',
      false,
      [['analytic', 'right', []], ['numeric', 'wrong', ['running-statistics']]],
    ]);
  });

  it('bad files exit 2 naming the file', async () => {
    const missing = await bnmlp(['check', 'case.npz', 'nope.npz']);
    expect([missing.status, missing.stderr]).toEqual([2, 'bnmlp diagnose: nope.npz: no such file\n(see `bnmlp diagnose --help`)\n']);
    const swapped = await bnmlp(['check', 'right.json', 'case.npz']);
    expect(swapped.status).toBe(2);
    expect(swapped.stderr).toContain('right.json: not a bnmlp diagnose case');
  });
});

const NUMPY = spawnSync('/usr/bin/python3', ['-c', 'import numpy']).status === 0;
if (!NUMPY) console.log("skipping the NumPy end-to-end test: `/usr/bin/python3 -c 'import numpy'` failed (apt-get install python3-numpy)");

describe.skipIf(!NUMPY)('end to end: the built binary and a NumPy BN MLP (fixtures/bn_mlp.py)', () => {
  const script = join(cliRoot, 'src', 'diagnose', 'fixtures', 'bn_mlp.py');
  const dir = join(tmp, 'e2e');
  let bin: string;
  beforeAll(async () => {
    bin = builtBin();
    const exported = await runBin(bin, ['diagnose', 'export', ...SMALL, '--out', join(dir, 'case.npz')]);
    expect(exported.stderr).toBe('');
    expect(exported.status).toBe(0);
  });
  const numpy = (args: string[]) => {
    const r = spawnSync('/usr/bin/python3', [script, join(dir, 'case.npz'), ...args], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return r.stdout;
  };
  const check = (file: string) => runBin(bin, ['diagnose', 'check', join(dir, 'case.npz'), join(dir, file)]);

  it('their forward gives the case\'s J, and right gradients are diagnosed right (exit 0)', async () => {
    const c = parseCase(readNamedValues(join(dir, 'case.npz')), 'case.npz');
    expect(Number(/J = (\S+);/.exec(numpy([join(dir, 'right.npz')]))![1])).toBeCloseTo(c.cost, 12);
    const r = await check('right.npz');
    expect(r.stdout).toMatch(/^RIGHT: every array you gave is right\.$/m);
    expect(r.status).toBe(0);
  });

  it('with running statistics planted in their numeric check, the diagnosis names it (exit 1)', async () => {
    numpy([join(dir, 'running.npz'), '--bug', 'running-statistics']);
    const r = await check('running.npz');
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('analytic side (your W1, b1, …): right (10 of 10)');
    expect(r.stdout).toContain('1. running-statistics: running statistics in the perturbed forward pass — matches all 10');
  });

  it('the NumPy example of the README (section "Check your own implementation") is right', async () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Check your own implementation'));
    const code = /```python\n([\s\S]*?)```/.exec(section)![1];
    writeFileSync(join(dir, 'example.py'), code);
    const r = spawnSync('/usr/bin/python3', ['example.py'], { cwd: dir, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const checked = await check('mine.npz');
    expect(checked.stdout).toMatch(/^RIGHT: every array you gave is right\.$/m);
    expect(checked.status).toBe(0);
  });

  it('with the mean term dropped from their BN backward, saved column-sample, the diagnosis names it and the transposes', async () => {
    numpy([join(dir, 'dropped.npz'), '--bug', 'dropped-mean-term', '--columns']);
    const r = await check('dropped.npz');
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('transposed W recognised: your W1, W2, W3 (and num_*) are dOut×dIn');
    expect(r.stdout).toContain('numeric side (your num_W1, …): right (10 of 10)');
    expect(r.stdout).toMatch(/^WRONG: analytic: dropped-mean-term\.$/m);
  });
});
