import { costAndGradients as coreCostAndGradients, disposeModel, initBackend, modelFromWeights, type WeightsFile } from '@bnmlp/core';
import * as reference from '@bnmlp/reference';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCase } from '../commands/diagnose.js';
import { tinyCifarDir } from '../test-support/paths.js';
import { array, scalar, transpose, type NamedValues } from './arrays.js';
import { caseValues, parseCase, type CaseConfig } from './case.js';
import { catalogueEntry } from './catalogue.js';
import { diagnose } from './diagnosis.js';
import { DiagnoseInputError } from './errors.js';
import { answerValues } from './example.js';
import { decodeFile, encodeFile, type FileFormat } from './files.js';
import { CaseLab } from './lab.js';
import { formatDiagnosis } from './report.js';

const CONFIG: CaseConfig = { layers: 3, dims: 10, hidden: [12, 8], classes: 10, batch: 8, batchNorm: true, affine: true, lambda: 0.01, eps: 1e-3, runningAverageKeep: 0.9, seed: 1 };

async function labFor(config: CaseConfig): Promise<CaseLab> {
  const { c } = await buildCase(config, tinyCifarDir, {}, { importReference: async () => reference });
  return new CaseLab(reference, c);
}

let lab: CaseLab;
beforeAll(async () => {
  lab = await labFor(CONFIG);
});

/** Gradients by name (row-sample) → a file's entries, in a layout. */
function saved(grads: ReadonlyMap<string, ArrayLike<number>>, layout: 'row-sample' | 'column-sample', l: CaseLab = lab, prefix = ''): NamedValues {
  const out: NamedValues = new Map();
  for (const spec of l.specs) {
    const g = grads.get(spec.name);
    if (!g) continue;
    if (spec.kind !== 'W') out.set(`${prefix}${spec.name}`, layout === 'row-sample' ? array(spec.shape, g) : array([spec.shape[0], 1], g));
    else out.set(`${prefix}${spec.name}`, layout === 'row-sample' ? array(spec.shape, g) : array([spec.shape[1], spec.shape[0]], transpose(spec.shape[0], spec.shape[1], g)));
  }
  return out;
}

function viaFile(values: NamedValues, format: FileFormat): NamedValues {
  return decodeFile(format, encodeFile(format, values), `theirs.${format}`);
}

function referenceGradients(l: CaseLab = lab): Map<string, Float64Array> {
  const g = reference.costAndGradients(l.c.net, l.c.x, l.c.labels, l.c.config.lambda).gradients;
  return new Map(reference.parameters(l.c.net).map((p) => [p.name, reference.gradientOf(g, p)]));
}

const run = (values: NamedValues, l: CaseLab = lab) => diagnose(l, values, { case: 'case.npz', theirs: 'theirs.npz' });

describe('right gradients', () => {
  it("@bnmlp/reference's float64 gradients pass in every format and layout, with no cause and no convention named", () => {
    for (const [format, layout] of [['npz', 'row-sample'], ['mat', 'column-sample'], ['json', 'column-sample'], ['json', 'row-sample']] as const) {
      const d = run(viaFile(saved(referenceGradients(), layout), format));
      const text = formatDiagnosis(d);
      expect(d.passed, text).toBe(true);
      expect(d.convention).toBeNull();
      expect(d.sides.map((s) => [s.side, s.verdict, s.causes.length])).toEqual([['analytic', 'right', 0]]);
      expect(d.arrays.every((a) => a.verdict === 'right' && a.causes.length === 0)).toBe(true);
      expect(text).toMatch(/^RIGHT: every array you gave is right\.$/m);
      if (layout === 'column-sample') expect(d.theirs.layouts).toContain('transposed W recognised: your W1, W2, W3 are dOut×dIn');
    }
  });

  it("@bnmlp/core's float32 gradients on the same weights (through the weights format) pass, with no cause named", async () => {
    await initBackend('cpu');
    const model = modelFromWeights(reference.networkToWeights(lab.c.net, 'float64') as unknown as WeightsFile);
    try {
      const x = { rows: lab.c.x.rows, cols: lab.c.x.cols, data: Float32Array.from(lab.c.x.data) };
      const result = coreCostAndGradients(model, x, lab.c.labels, CONFIG.lambda);
      expect(Math.abs(result.cost - lab.c.cost)).toBeLessThan(1e-5);
      const grads = new Map(Object.entries(result.gradients).map(([name, g]) => [name, Float64Array.from(g.values)]));
      const d = run(viaFile(saved(grads, 'row-sample'), 'npz'));
      const text = formatDiagnosis(d);
      expect(d.passed, text).toBe(true);
      expect(d.sides.flatMap((s) => s.causes)).toEqual([]);
      // float32: not bit-identical, but far inside the tolerance.
      expect(Math.max(...d.arrays.map((a) => a.maxScaledError))).toBeGreaterThan(0);
      expect(Math.max(...d.arrays.map((a) => a.maxScaledError))).toBeLessThan(1e-5);
    } finally {
      disposeModel(model);
    }
  });

  it("the decimal oracle's gradients (50 digits) are right to 1e-9 of the scale: the exact gradient is exact", async () => {
    const tiny = await labFor({ ...CONFIG, dims: 4, hidden: [3], layers: 2, batch: 4 });
    const oracle = reference.decimalGradients(tiny.c.net, tiny.c.x, tiny.c.labels, CONFIG.lambda);
    const d = run(saved(new Map(Object.entries(oracle)), 'row-sample', tiny), tiny);
    expect(d.passed, formatDiagnosis(d)).toBe(true);
    expect(Math.max(...d.arrays.map((a) => a.maxScaledError))).toBeLessThan(1e-9);
  });

  it('a square W (hidden 12,12) given transposed is recognised by its values', async () => {
    const square = await labFor({ ...CONFIG, hidden: [12, 12] });
    const d = run(viaFile(saved(referenceGradients(square), 'column-sample', square), 'npz'), square);
    expect(d.passed, formatDiagnosis(d)).toBe(true);
    expect(d.arrays.find((a) => a.name === 'W2')!.layout).toBe('column-sample');
    const planted = catalogueEntry('dropped-mean-term')!.simulate(square);
    const wrong = run(viaFile(answerValues(planted, 'column-sample'), 'mat'), square);
    expect(wrong.sides.find((s) => s.side === 'analytic')!.causes.map((m) => m.name)).toEqual(['dropped-mean-term']);
  });

  it('a network without batch norm: right gradients pass; a missing ReLU mask is found; BN causes do not apply', async () => {
    const plain = await labFor({ ...CONFIG, batchNorm: false, affine: false });
    expect(run(saved(referenceGradients(plain), 'row-sample', plain), plain).passed).toBe(true);
    const d = run(answerValues(catalogueEntry('missing-relu-mask')!.simulate(plain), 'row-sample'), plain);
    expect(d.sides.map((s) => [s.side, s.verdict, s.causes.map((m) => m.name)])).toEqual([
      ['analytic', 'wrong', ['missing-relu-mask']],
      ['numeric', 'right', []],
    ]);
  });

  it('a relative error reported with a floor (small for the bias before BN) is right', () => {
    const sim = catalogueEntry('no-floor-on-exact-zero')!.simulate(lab);
    const values = answerValues({ ...sim, relerr: new Map([...sim.relerr!].map(([name, r]) => [name, /^b[12]$/.test(name) ? 0 : r])) }, 'row-sample');
    const d = run(values);
    expect(d.passed, formatDiagnosis(d)).toBe(true);
    expect(d.relerr.map((r) => r.verdict)).toEqual(new Array(10).fill('right'));
  });
});

describe('an error no catalogue entry explains', () => {
  it('is "wrong, no known cause matches", with the worst entries', () => {
    const grads = referenceGradients();
    const W2 = Float64Array.from(grads.get('W2')!);
    for (const i of [3, 17, 40]) W2[i] = W2[i] * 1.5 + 0.01;
    const d = run(saved(new Map([...grads, ['W2', W2]]), 'row-sample'));
    const text = formatDiagnosis(d);
    expect(d.passed).toBe(false);
    const analytic = d.sides.find((s) => s.side === 'analytic')!;
    expect(analytic.causes).toEqual([]);
    expect(d.arrays.filter((a) => a.verdict === 'wrong').map((a) => a.name)).toEqual(['W2']);
    expect(text).toContain('wrong, no known cause matches.');
    expect(text).toMatch(/worst entries:\n {4}W2\[2,1\]: yours 2\.171495e-1, exact 1\.380997e-1, err 3\.50e-1 × scale, rel err 2\.23e-1\n {4}W2\[5,0\]/);
    expect(text).toMatch(/^WRONG: analytic: no known cause matches\.$/m);
  });

  it('on the numeric side too (numeric gradients 30 % too large)', () => {
    const exact = referenceGradients();
    const values = saved(exact, 'row-sample');
    for (const [name, g] of saved(new Map([...exact].map(([n, v]) => [n, v.map((x) => 1.3 * x)])), 'row-sample', lab, 'num_')) values.set(name, g);
    values.set('h', scalar(1e-5));
    const d = run(values);
    const numeric = d.sides.find((s) => s.side === 'numeric')!;
    expect([numeric.verdict, numeric.causes]).toEqual(['wrong', []]);
    expect(formatDiagnosis(d)).toContain('wrong, no known cause matches.');
  });
});

describe('bad input: each a clear message naming the parameter or the file', () => {
  const expectInput = (values: NamedValues, message: RegExp) => {
    let error: unknown;
    try {
      run(values);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DiagnoseInputError);
    expect((error as Error).message).toMatch(message);
  };

  it('a missing parameter', () => {
    const values = saved(referenceGradients(), 'row-sample');
    values.delete('beta2');
    expectInput(values, /^bnmlp diagnose: theirs\.npz: missing parameter beta2: give the analytic gradient of every parameter \(W1, b1, gamma1, beta1, W2, b2, gamma2, beta2, W3, b3\)/);
  });

  it('a wrong shape', () => {
    const values = saved(referenceGradients(), 'row-sample');
    values.set('W2', array([12, 7], new Float64Array(84)));
    expectInput(values, /^bnmlp diagnose: theirs\.npz: W2 has shape 12×7; expected 12×8 \(row-sample, dIn×dOut\) or 8×12 \(column-sample, dOut×dIn\)$/);
    values.set('W2', array([12, 8], new Float64Array(96)));
    values.set('num_gamma1', array([11], new Float64Array(11)));
    expectInput(values, /theirs\.npz: num_gamma1 has shape 11; expected a vector of 12/);
  });

  it('NaN entries (also as Python writes them in JSON)', () => {
    const values = saved(referenceGradients(), 'row-sample');
    const W1 = values.get('W1') as unknown as { shape: number[]; data: Float64Array };
    W1.data[2 * 12 + 3] = NaN;
    expectInput(values, /^bnmlp diagnose: theirs\.npz: W1 has 1 NaN or infinite entry \(the first at \[2,3\] of 10×12\): every entry must be a finite gradient$/);
    const json = '{' + [...saved(referenceGradients(), 'row-sample')].map(([n, v]) => `"${n}": ${n === 'b3' ? '[NaN, NaN, 0, 0, 0, 0, 0, 0, 0, 0]' : JSON.stringify(Array.from((v as { data: Float64Array }).data))}`).join(', ') + '}';
    expect(() => diagnose(lab, decodeFile('json', Buffer.from(json), 'theirs.json'), { case: 'case.json', theirs: 'theirs.json' })).toThrow(/theirs\.json: b3 has 2 NaN or infinite entries \(the first at \[0\] of 10\)/);
  });

  it('a name that is no parameter of the case, and a file with no gradients at all', () => {
    const values = saved(referenceGradients(), 'row-sample');
    values.set('W7', array([2, 2], [1, 2, 3, 4]));
    expectInput(values, /theirs\.npz: W7 is not a parameter of this case \(it has W1, b1, gamma1, beta1, W2, b2, gamma2, beta2, W3, b3\)/);
    expectInput(new Map([['loss', scalar(2.3)]]), /theirs\.npz: holds no gradients: expected arrays named W1, b1, gamma1, beta1, … \(and optionally num_W1, …\); found 'loss'/);
  });

  it('a case file from another version, a file that is no case, and the two files swapped', () => {
    const values = caseValues(lab.c, 'test');
    expect(parseCase(decodeFile('mat', encodeFile('mat', values), 'case.mat'), 'case.mat').cost).toBe(lab.c.cost);
    values.set('version', scalar(2));
    expect(() => parseCase(values, 'old.npz')).toThrow(/^bnmlp diagnose: old\.npz: a bnmlp diagnose case of version 2; this bnmlp reads version 1: export the case again/);
    expect(() => parseCase(new Map([['x', scalar(1)]]), 'other.npz')).toThrow(/other\.npz: not a bnmlp diagnose case \(no 'format' entry 'bnmlp-diagnose-case'\)$/);
    expect(() => parseCase(saved(referenceGradients(), 'row-sample'), 'theirs.npz')).toThrow(/theirs\.npz: not a bnmlp diagnose case .*: it looks like a gradient file; the case comes first: bnmlp diagnose check CASE YOURS/);
    const damaged = caseValues(lab.c, 'test');
    damaged.delete('W2');
    expect(() => parseCase(damaged, 'case.npz')).toThrow(/case\.npz: the case has no 'W2'/);
  });

  it('bad h and relerr entries', () => {
    const values = saved(referenceGradients(), 'row-sample');
    values.set('h', scalar(-1));
    expectInput(values, /theirs\.npz: 'h' \(the step of your numeric gradients\) must be one number > 0, got -1/);
  });
});
