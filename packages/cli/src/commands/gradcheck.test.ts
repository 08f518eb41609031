import * as reference from '@bnmlp/reference';
import { preprocessCifar, readCifarDirectory } from '@bnmlp/trainer';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { CliArgumentError, CliDependencyError } from '../errors.js';
import { tinyCifarDir } from '../test-support/paths.js';
import {
  CORE_GRADIENT_TOLERANCE,
  DEFAULT_GRADCHECK_OPTIONS,
  GRADCHECK_FLAGS,
  STENCIL_STEP,
  STENCIL_TOLERANCE,
  coreGradients,
  formatGradcheckReport,
  loadReference,
  parseGradcheckArgs,
  runGradcheck,
  type GradcheckReport,
  type ReferenceModule,
} from './gradcheck.js';

function capture() {
  const out = { stdout: '', stderr: '' };
  return { out, context: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

async function rejects(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

function expectedNames(layers: number, batchNorm: boolean): string[] {
  return Array.from({ length: layers }, (_, l) => {
    const n = l + 1;
    return batchNorm && n < layers ? [`W${n}`, `b${n}`, `gamma${n}`, `beta${n}`] : [`W${n}`, `b${n}`];
  }).flat();
}

describe('runGradcheck with the defaults, on the generated fixture', () => {
  let report: GradcheckReport;
  // Every entry of 12 networks in float64: about 30 s alone on the 2-core machine, and 120 s (the
  // default hook timeout) was exceeded once with a mutation run sharing the cores. The timeout only
  // guards against a hang; speed is measured by benchmarks, not here.
  beforeAll(async () => {
    report = await runGradcheck({ data: tinyCifarDir });
  }, 600_000);

  it('checks every entry of every parameter of 2-, 3- and 4-layer nets, without and with BN, λ = 0 and 0.01, and all pass', () => {
    expect(report.configurations.map((c) => c.label)).toEqual(
      [2, 3, 4].flatMap((k) => [`${k}-layer no BN λ=0`, `${k}-layer no BN λ=0.01`, `${k}-layer BN λ=0`, `${k}-layer BN λ=0.01`]),
    );
    for (const c of report.configurations) {
      expect(c.hiddenDims).toEqual(new Array(c.layers - 1).fill(50));
      expect(c.parameters.map((p) => p.name)).toEqual(expectedNames(c.layers, c.batchNorm));
      for (const p of c.parameters) {
        expect(p.evaluated, `${c.label} ${p.name}`).toBe(p.shape.reduce((a, b) => a * b, 1));
        expect(p.passed, `${c.label} ${p.name}`).toBe(true);
        expect(p.maxRelativeError).toBeLessThanOrEqual(1e-6);
      }
      expect(c.parameters.find((p) => p.name === 'W1')!.shape).toEqual([20, 50]);
      expect(c.parameters.at(-2)!.shape).toEqual([50, 10]);
    }
    expect(report.passed).toBe(true);
    expect(report.summary.rows).toBe(96);
    expect(report.summary.failedRows).toBe(0);
    expect(report.summary.entriesEvaluated).toBe(report.configurations.flatMap((c) => c.parameters).reduce((a, p) => a + p.evaluated, 0));
  });

  it('shows the bias before batch norm as an exact 0 whose numeric gradient is only rounding noise', () => {
    const biases = report.configurations.flatMap((c) => c.parameters.filter((p) => /^b\d+$/.test(p.name)).map((p) => ({ c, p })));
    const beforeBn = biases.filter(({ c, p }) => c.batchNorm && Number(p.name.slice(1)) < c.layers);
    expect(beforeBn).toHaveLength(2 * (1 + 2 + 3));
    for (const { c, p } of biases) {
      const expected = beforeBn.some((b) => b.p === p);
      expect(p.biasBeforeBatchNorm, `${c.label} ${p.name}`).toBe(expected);
      expect(p.analyticExactlyZero, `${c.label} ${p.name}`).toBe(expected);
      if (expected) expect(p.maxAbsNumeric).toBeLessThanOrEqual(c.absoluteFloor);
      else expect(p.maxAbsNumeric).toBeGreaterThan(1e-4);
    }
    const text = formatGradcheckReport(report);
    const zeroRows = text.split('\n').filter((line) => line.includes('analytic exactly 0'));
    expect(zeroRows).toHaveLength(beforeBn.length);
    for (const row of zeroRows) expect(row).toMatch(/ b\d +50 .*analytic exactly 0, \|numeric\| <= \d\.\de[-+]\d+ +PASS$/);
  });

  it('uses the first batch records, standardized by the whole training set (the reported cost says so)', () => {
    const { train } = readCifarDirectory(tinyCifarDir);
    expect(report.data.batch.labels).toEqual(Array.from(train.labels.subarray(0, 10)));
    expect(report.data.trainRecords).toBe(40);
    const x = preprocessCifar(train, [], { dims: 20 }).train;
    const batch = { rows: 10, cols: 20, data: Float64Array.from(x.data.subarray(0, 200)) };
    for (const c of report.configurations) {
      const net = reference.createNetwork(
        { inputDim: 20, hiddenDims: c.hiddenDims, classes: 10, batchNorm: c.batchNorm, bnAffine: true },
        { kind: 'he' },
        reference.createPrng(1),
      );
      expect(c.cost, c.label).toBe(reference.cost(net, batch, train.labels.subarray(0, 10), c.lambda).cost);
    }
  });

  it('prints one table row per (configuration, parameter), the data source and a PASS summary', () => {
    const text = formatGradcheckReport(report);
    expect(text).toContain(`data:     CIFAR-10 binary data from ${tinyCifarDir} (given by data)\n`);
    const rows = text.split('\n').filter((line) => /^\d-layer /.test(line));
    expect(rows).toHaveLength(96);
    expect(rows[0]).toMatch(/^2-layer no BN λ=0 +W1 +20x50 +1000 +\d+ +\d+ +\d\.\d\de-\d+ +\d\.\d\de-\d+ +\[\d+,\d+\] a=\S+ n=\S+ +PASS$/);
    expect(text).toContain('every entry of every parameter');
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^PASS: all 96 parameter rows pass \(12 configurations, \d+ entries evaluated/);
  });
});

describe('runGradcheck options', () => {
  const small = { data: tinyCifarDir, hidden: 8 } as const;

  it('checks only λ = 0 when --lambda is 0, and the requested depths', async () => {
    const report = await runGradcheck({ ...small, lambda: 0, layers: [3] });
    expect(report.configurations.map((c) => c.label)).toEqual(['3-layer no BN λ=0', '3-layer BN λ=0']);
  });

  it('samples at most maxEntries entries per parameter and says so', async () => {
    const report = await runGradcheck({ ...small, layers: [2], maxEntries: 7 });
    for (const p of report.configurations.flatMap((c) => c.parameters)) expect(p.evaluated).toBe(Math.min(7, p.shape.reduce((a, b) => a * b, 1)));
    expect(report.check.coverage).toBe('at most 7 random entries per parameter');
    expect(formatGradcheckReport(report)).toContain('at most 7 random entries per parameter');
  });

  it('passes directional mode through', async () => {
    const report = await runGradcheck({ ...small, layers: [2], mode: 'directional', directions: 3 });
    expect(report.check.mode).toBe('directional');
    for (const p of report.configurations.flatMap((c) => c.parameters)) {
      expect(p.evaluated).toBe(3);
      expect(p.passed).toBe(true);
    }
  });

  it('rejects bad fields with typed errors naming them', async () => {
    for (const [input, argument] of [
      [{ dims: 0 }, 'dims'],
      [{ batch: 1 }, 'batch'],
      [{ layers: [] }, 'layers'],
      [{ mode: 'all' }, 'mode'],
      [{ lambda: Number.NaN }, 'lambda'],
    ] as const) {
      const error = (await rejects(runGradcheck({ ...small, ...input } as never))) as CliArgumentError;
      expect(error).toBeInstanceOf(CliArgumentError);
      expect([error.op, error.argument]).toEqual(['runGradcheck', argument]);
    }
    const tooMany = (await rejects(runGradcheck({ ...small, batch: 41 }))) as CliArgumentError;
    expect(tooMany.argument).toBe('batch');
    expect(tooMany.expected).toContain('at most 40');
  });

  it('reports failures: a numeric side that uses running statistics fails every BN configuration, and the CLI exits 1', async () => {
    const broken: ReferenceModule = {
      ...reference,
      gradientCheck: (net, x, labels, lambda, options) =>
        reference.gradientCheck(net, x, labels, lambda, { ...options, numericForward: (n, input) => reference.forward(n, input, 'inference') }),
    };
    const report = await runGradcheck({ ...small, layers: [2] }, { importReference: async () => broken });
    expect(report.passed).toBe(false);
    for (const c of report.configurations) expect(c.passed, c.label).toBe(!c.batchNorm);
    const { out, context } = capture();
    const status = await runCli(['gradcheck', '--data', tinyCifarDir, '--hidden', '8', '--layers', '2'], { ...context, deps: { importReference: async () => broken } });
    expect(status).toBe(1);
    expect(out.stdout).toMatch(/2-layer BN λ=0 +W1 .* FAIL \(\d+\)/);
    expect(out.stdout.trimEnd().split('\n').at(-1)).toMatch(/^FAIL: 12 of 20 parameter rows fail .*: 2-layer BN λ=0 W1; 2-layer BN λ=0 b1; /);
  });
});

describe('loading @bnmlp/reference', () => {
  const missing = () => Promise.reject(Object.assign(new Error("Cannot find package '@bnmlp/reference' imported from /x/gradcheck.js"), { code: 'ERR_MODULE_NOT_FOUND' }));

  it('turns "not installed" into a CliDependencyError that says what to do', async () => {
    const error = (await rejects(loadReference('bnmlp gradcheck', missing))) as CliDependencyError;
    expect(error).toBeInstanceOf(CliDependencyError);
    expect(error.dependency).toBe('@bnmlp/reference');
    expect(error.message).toContain('devDependency');
    expect(error.message).toContain('pnpm install');
    expect(error.actual).toContain("Cannot find package '@bnmlp/reference'");
  });

  it('lets other import errors through unchanged', async () => {
    const syntax = new SyntaxError('Unexpected token');
    expect(await rejects(loadReference('x', () => Promise.reject(syntax)))).toBe(syntax);
  });

  it('the CLI reports it with exit status 1', async () => {
    const { out, context } = capture();
    const status = await runCli(['gradcheck', '--data', tinyCifarDir], { ...context, deps: { importReference: missing } });
    expect(status).toBe(1);
    expect(out.stderr).toMatch(/^bnmlp: bnmlp gradcheck: @bnmlp\/reference must be installed and built/);
    expect(out.stdout).toBe('');
  });
});

describe('bnmlp gradcheck arguments', () => {
  it('maps every flag in the help to its option', () => {
    const samples: Record<string, [string, unknown]> = {
      data: [tinyCifarDir, tinyCifarDir],
      dims: ['7', 7],
      batch: ['3', 3],
      hidden: ['5', 5],
      layers: ['2,4', [2, 4]],
      lambda: ['0.5', 0.5],
      seed: ['9', 9],
      mode: ['directional', 'directional'],
      directions: ['2', 2],
      'max-entries': ['11', 11],
      step: ['1e-5', 1e-5],
      stencil: ['4', 4],
      tolerance: ['1e-4', 1e-4],
      impl: ['core', 'core'],
      backend: ['cpu', 'cpu'],
    };
    const valued = GRADCHECK_FLAGS.filter((f) => f.value).map((f) => f.flag);
    expect(valued.sort()).toEqual(Object.keys(samples).sort());
    const args = (skip: string[]) => Object.entries(samples).filter(([flag]) => !skip.includes(flag)).flatMap(([flag, [text]]) => [`--${flag}`, text]);
    const common = { data: tinyCifarDir, dims: 7, batch: 3, hidden: 5, layers: [2, 4], lambda: 0.5, seed: 9, mode: 'directional', directions: 2, maxEntries: 11, step: 1e-5, stencil: 4 };
    // --backend goes with --impl core only, and --impl core fixes the tolerance.
    expect(parseGradcheckArgs(args(['impl', 'backend'])).options).toEqual({ ...common, tolerance: 1e-4, impl: 'reference', backend: 'auto' });
    expect(parseGradcheckArgs(args(['tolerance'])).options).toEqual({ ...common, tolerance: CORE_GRADIENT_TOLERANCE.relative, impl: 'core', backend: 'cpu' });
    expect(parseGradcheckArgs([]).options).toEqual(DEFAULT_GRADCHECK_OPTIONS);
    expect(parseGradcheckArgs(['--json']).json).toBe(true);
    expect(parseGradcheckArgs(['-h']).help).toBe(true);
  });

  it('--json prints one parseable document with the settings, the data source and every parameter report', async () => {
    const { out, context } = capture();
    const status = await runCli(['gradcheck', '--json', '--data', tinyCifarDir, '--hidden', '8', '--layers', '2,3', '--lambda', '0.1'], context);
    expect(status).toBe(0);
    const doc = JSON.parse(out.stdout);
    expect(doc).toMatchObject({
      format: 'bnmlp-gradcheck',
      version: 1,
      passed: true,
      options: { data: tinyCifarDir, dims: 20, batch: 10, hidden: 8, layers: [2, 3], lambda: 0.1, mode: 'entries', maxEntries: null },
      data: { kind: 'option', dir: tinyCifarDir, trainRecords: 40, features: { dims: 20, of: 3072 }, batch: { records: 10 } },
      network: { init: 'he', seed: 1, classes: 10, eps: 1e-5 },
      check: { mode: 'entries', stencil: 2, precision: 'float64', h: 1e-6, tolerance: 1e-6, coverage: 'every entry of every parameter' },
      summary: { configurations: 8, failedRows: 0 },
    });
    expect(doc.configurations.map((c: { label: string }) => c.label)).toEqual([
      '2-layer no BN λ=0', '2-layer no BN λ=0.1', '2-layer BN λ=0', '2-layer BN λ=0.1',
      '3-layer no BN λ=0', '3-layer no BN λ=0.1', '3-layer BN λ=0', '3-layer BN λ=0.1',
    ]);
    const w1 = doc.configurations[2].parameters[0];
    expect(Object.keys(w1).sort()).toEqual(
      ['analyticExactlyZero', 'biasBeforeBatchNorm', 'evaluated', 'failures', 'maxAbsNumeric', 'maxRelativeError', 'meanRelativeError', 'name', 'passed', 'shape', 'skippedKinks', 'belowFloor', 'worst'].sort(),
    );
    expect(w1).toMatchObject({ name: 'W1', shape: [20, 8], evaluated: 160, passed: true });
    expect(Object.keys(w1.worst).sort()).toEqual(['analytic', 'diff', 'index', 'numeric', 'relativeError']);
    expect(doc.summary.rows).toBe(doc.configurations.reduce((a: number, c: { parameters: unknown[] }) => a + c.parameters.length, 0));
  });
});

describe('bnmlp gradcheck --stencil', () => {
  it('defaults to the two-point difference; --stencil 4 brings its own step and tolerance unless given; other values are usage errors', () => {
    expect(parseGradcheckArgs([]).options).toMatchObject({ stencil: 2, step: STENCIL_STEP[2], tolerance: STENCIL_TOLERANCE[2] });
    expect([STENCIL_STEP[2], STENCIL_TOLERANCE[2]]).toEqual([DEFAULT_GRADCHECK_OPTIONS.step, DEFAULT_GRADCHECK_OPTIONS.tolerance]);
    // The reference's own defaults for each stencil (its precision: float64 for 2, double-double for 4).
    for (const stencil of [2, 4] as const) expect(reference.gradientCheckDefaults(stencil, stencil === 4 ? 'double-double' : 'float64')).toEqual({ h: STENCIL_STEP[stencil], tolerance: STENCIL_TOLERANCE[stencil] });
    expect(parseGradcheckArgs(['--stencil', '4']).options).toMatchObject({ stencil: 4, step: 1e-6, tolerance: 1e-9 });
    expect(parseGradcheckArgs(['--stencil', '4', '--step', '1e-3', '--tolerance', '1e-7']).options).toMatchObject({ stencil: 4, step: 1e-3, tolerance: 1e-7 });
    expect(parseGradcheckArgs(['--stencil', '2', '--step', '1e-5']).options).toMatchObject({ stencil: 2, step: 1e-5, tolerance: 1e-6 });
    for (const bad of ['3', '1', 'four', '4.0x'])
      expect(() => parseGradcheckArgs(['--stencil', bad]), bad).toThrow(/--stencil.*2 or 4/s);
    const help = GRADCHECK_FLAGS.find((f) => f.flag === 'stencil')!;
    expect(help).toMatchObject({ value: '<2|4>', default: '2' });
    expect(help.help).toContain('double-double');
    expect(GRADCHECK_FLAGS.find((f) => f.flag === 'tolerance')!.default).toBe('1e-6 (--stencil 2), 1e-9 (--stencil 4)');
  });

  const small = { data: tinyCifarDir, dims: 6, batch: 6, hidden: 6, layers: [2, 3] };

  it('--stencil 4 evaluates J in double-double: every nonzero entry ≤ 1e-9, none excused by the floor, exact zeros judged like the rest', async () => {
    const two = await runGradcheck(small);
    const four = await runGradcheck({ ...small, stencil: 4 });
    expect(four.check).toMatchObject({ stencil: 4, precision: 'double-double', h: 1e-6, tolerance: 1e-9 });
    expect(four.check.method).toBe("centered differences of J in double-double arithmetic (~32 digits) against @bnmlp/reference's float64 analytic gradients (gradientCheck)");
    expect(four.check.absoluteFloor).toContain('64 * 2^-104 * max(1, |J|) / h');
    expect(four.passed).toBe(true);
    for (const c of four.configurations)
      for (const p of c.parameters) {
        expect(p.belowFloor, `${c.label} ${p.name}`).toBe(0);
        expect(p.maxRelativeError, `${c.label} ${p.name}`).toBeLessThanOrEqual(1e-9);
      }
    expect(four.summary).toMatchObject({ belowFloor: 0, failedRows: 0 });
    expect(four.summary.maxRelativeError).toBeLessThanOrEqual(1e-9);
    // The two-point table excuses the exact zeros (and maybe more) by its float64 floor and is limited to ~1e-7.
    expect(two.summary.belowFloor).toBeGreaterThan(0);
    expect(two.summary.maxRelativeError).toBeGreaterThan(1e3 * four.summary.maxRelativeError);
    const { out, context } = capture();
    expect(await runCli(['gradcheck', '--stencil', '4', '--data', tinyCifarDir, '--dims', '4', '--batch', '4', '--hidden', '4', '--layers', '2'], context)).toBe(0);
    expect(out.stdout).toContain('five-point (4th-order, Richardson) centered difference on J in double-double arithmetic (~32 digits), h = 1e-6, tolerance 1e-9 on');
    expect(out.stdout).toContain('"floor": entries within the rounding floor 64*2^-104*max(1,|J|)/h');
    expect(out.stdout.trimEnd().split('\n').at(-1)).toMatch(/^PASS: all 20 parameter rows pass \(4 configurations, \d+ entries evaluated, \d+ kinks skipped, 0 within the floor; worst relative error \d\.\d\de-\d+\) in /);
  });

  it('--stencil 4 fails an analytic gradient 1e-6 off in one entry, which the two-point table passes', async () => {
    // A reference whose analytic W2[0, 0] is off by a relative 1e-6 (as a subtle backward bug would be).
    const planted: ReferenceModule = {
      ...reference,
      gradientCheck: (net, x, labels, lambda, options) => {
        const own = reference.costAndGradients(net, x, labels, lambda).gradients;
        const analytic = Object.fromEntries(reference.parameters(net).map((p) => [p.name, Float64Array.from(reference.gradientOf(own, p))]));
        analytic.W2[0] *= 1 + 1e-6;
        return reference.gradientCheck(net, x, labels, lambda, { ...options, analytic });
      },
    };
    const deps = { importReference: async () => planted };
    expect((await runGradcheck(small, deps)).passed).toBe(true);
    const four = await runGradcheck({ ...small, stencil: 4 }, deps);
    const failed = four.configurations.flatMap((c) => c.parameters.filter((p) => !p.passed).map((p) => `${c.label} ${p.name} ${p.failures} [${p.worst!.index}]`));
    expect(failed).toEqual(four.configurations.map((c) => `${c.label} W2 1 [0,0]`));
  });
});

describe('bnmlp gradcheck --impl core', () => {
  const small = ['--data', tinyCifarDir, '--dims', '10', '--batch', '6', '--layers', '2,3'];

  it("passes on the fixture: @bnmlp/core's float32 gradients against float64 differences and the reference's gradients", async () => {
    const { out, context } = capture();
    const status = await runCli(['gradcheck', '--impl', 'core', ...small], context);
    expect(out.stderr).toBe('');
    expect(status).toBe(0);
    const text = out.stdout;
    // The tolerance and where it is justified are stated.
    expect(text).toContain("tolerance 0.002 × scale, scale = the parameter's largest |reference gradient entry|");
    expect(text).toContain('packages/core/src/test-support/compare.ts');
    expect(text).toMatch(/^float32: {2}@bnmlp\/core on (wasm|cpu|tensorflow), on the reference's weights rounded to float32/m);
    const header = text.split('\n').find((line) => line.startsWith('configuration'))!;
    expect(header.split(/ {2,}/)).toEqual([
      'configuration', 'param', 'shape', 'checked', 'kinks', 'floor', 'max rel err', 'mean rel err', 'worst entry', 'vs numeric',
      'max rel err vs ref', 'worst entry vs ref', 'vs ref', 'result',
    ]);
    const rows = text.split('\n').filter((line) => /^\d-layer /.test(line));
    expect(rows).toHaveLength(52);
    expect(rows[0]).toMatch(/^2-layer no BN λ=0 +W1 +10x50 +500 +0 +\d+ +\S+ +\S+ +\[\d+,\d+\] a=\S+ n=\S+ +PASS +\S+ +\[\d+,\d+\] c=\S+ r=\S+ +PASS \(\S+ of limit\) +PASS$/);
    // The bias before BN: exactly 0 in core and reference.
    expect(rows.find((line) => line.startsWith('2-layer BN λ=0 ') && / b1 /.test(line))).toMatch(/analytic exactly 0, .* both exactly 0 +PASS \(0 of limit\) +PASS$/);
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^PASS: all 52 parameter rows pass both comparisons \(8 configurations, /);
  });

  it('--json has both comparisons per parameter and the tolerance', async () => {
    const { out, context } = capture();
    const status = await runCli(['gradcheck', '--impl', 'core', '--backend', 'cpu', '--json', ...small, '--layers', '2'], context);
    expect(status).toBe(0);
    const doc = JSON.parse(out.stdout) as GradcheckReport;
    expect(doc).toMatchObject({
      passed: true,
      options: { impl: 'core', backend: 'cpu', tolerance: 0.002, dims: 10, batch: 6, layers: [2] },
      core: { backend: 'cpu', tolerance: 0.002, justification: 'packages/core/src/test-support/compare.ts (TOLERANCES.gradient)' },
      check: { tolerance: 0.002 },
    });
    for (const c of doc.configurations)
      for (const p of c.parameters) {
        expect(p.core!.versusNumericPassed, `${c.label} ${p.name}`).toBe(true);
        expect(p.core!.versusReference.passed, `${c.label} ${p.name}`).toBe(true);
        expect(p.core!.versusReference.limit).toBeCloseTo(0.002 * p.core!.versusReference.scale, 15);
        expect(p.core!.versusReference.usedOfLimit).toBeLessThan(0.1);
        expect(p.core!.floor).toBeGreaterThanOrEqual(c.absoluteFloor);
        expect(p.evaluated).toBe(p.shape.reduce((a, b) => a * b, 1));
      }
  });

  it('fails with exit 1, naming the parameter, when one gradient is 1 % off (a planted bug)', async () => {
    const planted = (model: Parameters<typeof coreGradients>[0], x: Parameters<typeof coreGradients>[1], labels: Uint8Array, lambda: number) => {
      const gradients = coreGradients(model, x, labels, lambda);
      return { ...gradients, W2: gradients.W2.map((v) => v * 1.01) };
    };
    const { out, context } = capture();
    const status = await runCli(['gradcheck', '--impl', 'core', '--backend', 'cpu', ...small], { ...context, deps: { coreGradients: planted } });
    expect(status).toBe(1);
    const rows = out.stdout.split('\n').filter((line) => /^\d-layer /.test(line));
    const failing = rows.filter((line) => / FAIL$/.test(line));
    expect(failing).toHaveLength(8);
    for (const line of failing) expect(line).toMatch(/^\d-layer .*λ=\S+ +W2 .* FAIL \(\d+\) .* FAIL \(\S+ of limit\) +FAIL$/);
    for (const line of rows.filter((l) => !/ W2 /.test(l))) expect(line).toMatch(/ PASS$/);
    expect(out.stdout.trimEnd().split('\n').at(-1)).toMatch(
      /^FAIL: 8 of 52 parameter rows fail .*: 2-layer no BN λ=0 W2 \(vs numeric, vs ref\); 2-layer no BN λ=0\.01 W2 \(vs numeric, vs ref\); .*3-layer BN λ=0\.01 W2 \(vs numeric, vs ref\)$/,
    );
  });

  it.each([
    [['--impl', 'nope'], "bnmlp gradcheck: option --impl must be 'reference' or 'core', got 'nope'"],
    [['--impl', 'core', '--tolerance', '1e-4'], "bnmlp gradcheck: option --tolerance must be left out with --impl core (float32 gradients are judged with the fixed tolerance 0.002), got '1e-4'"],
    [['--backend', 'cpu'], "bnmlp gradcheck: option --backend must be used with --impl core only (the reference is plain float64 JavaScript), got 'cpu'"],
    [['--impl', 'core', '--backend', 'gpu'], "bnmlp gradcheck: option --backend must be 'auto', 'tensorflow', 'wasm' or 'cpu', got 'gpu'"],
  ])('%j is a usage error (exit 2)', async (args, message) => {
    const { out, context } = capture();
    const status = await runCli(['gradcheck', ...args, '--data', tinyCifarDir], context);
    expect([status, out.stdout]).toEqual([2, '']);
    expect(out.stderr).toBe(`${message}\n(see \`bnmlp gradcheck --help\`)\n`);
  });

  it('runGradcheck from code names the fields', async () => {
    const error = (await rejects(runGradcheck({ data: tinyCifarDir, impl: 'nope' as never }))) as CliArgumentError;
    expect([error.op, error.argument]).toEqual(['runGradcheck', 'impl']);
  });
});
