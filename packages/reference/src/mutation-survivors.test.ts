import { describe, expect, it } from 'vitest';
import { scaleShiftForward } from './batch-norm.js';
import { decimalCost, decimalGradients } from './decimal-oracle.js';
import { DoubleDoubleCost } from './double-double-model.js';
import { ddExp, ddFromNumber, ddToNumber, twoSum } from './double-double.js';
import { describeValue } from './errors.js';
import { describeFailures, gradientCheck, GradientCheckError } from './gradient-check.js';
import { fromRows } from './matrix.js';
import { accuracy, costAndGradients, forward, type ForwardResult } from './model.js';
import { createNetwork, parameters, type Network } from './network.js';
import { createPrng } from './prng.js';
import { createVelocity, gradientOf, trainStep } from './sgd.js';
import { expectArgumentError } from './test-support/assertions.js';
import { networkFromWeights, networkToWeights } from './weights-format.js';
import { buildNetworkCase, type NetworkCaseSpec } from './test-support/arbitraries.js';

// Tests written against mutants that survived the first StrykerJS run (docs/mutation.md): each
// names what it pins down that no earlier test did.

describe('accuracy (model.ts)', () => {
  it('takes the argmax over all classes of each row, the first index winning ties', () => {
    // Rows: argmax at 2; at 0 with a larger first entry in the next row (a loop that ran one
    // column too far would read it); at 0; a tie of 0 and 1 (0 wins); at 1.
    const probs = fromRows([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [0.2, 0.5, 0.3]]);
    expect(accuracy(probs, [2, 0, 0, 0, 1])).toBe(1);
    expect(accuracy(probs, [2, 0, 0, 1, 1])).toBe(0.8);
    expect(accuracy(probs, [0, 1, 1, 1, 0])).toBe(0);
  });
});

describe('inference-mode gradients (model.ts)', () => {
  const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };

  it('match centered differences of the inference-mode cost (fixed running statistics: ∂J/∂s = ∂J/∂ŝ / sqrt(var + ε))', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    // Running averages unlike the batch's, so inference differs from training mode.
    net.layers[0].bn!.runningMean.set([0.3, -0.2, 0.1, 0.5, -0.4]);
    net.layers[0].bn!.runningVar.set([0.5, 2, 1.5, 0.8, 3]);
    const grads = costAndGradients(net, x, labels, lambda, 'inference').gradients;
    const analytic = Object.fromEntries(parameters(net).map((p) => [p.name, gradientOf(grads, p)]));
    const inference = (n: Network, input: typeof x): ForwardResult => forward(n, input, 'inference');
    const report = gradientCheck(net, x, labels, lambda, { analytic, numericForward: inference, tolerance: 1e-6 });
    expect(report.passed).toBe(true);
    // The bias before BN is not exactly 0 here (running statistics do not remove a shift).
    expect(report.parameters.find((p) => p.name === 'b1')!.analyticExactlyZero).toBe(false);
    // ...and the training-mode gradients are not the inference-mode ones.
    const train = costAndGradients(net, x, labels, lambda, 'train').gradients;
    expect(gradientCheck(net, x, labels, lambda, { analytic: Object.fromEntries(parameters(net).map((p) => [p.name, gradientOf(train, p)])), numericForward: inference }).passed).toBe(false);
  });
});

describe('gradientCheck statistics (gradient-check.ts ErrorTally)', () => {
  const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };
  const { net, x, labels, lambda } = buildNetworkCase(spec);
  const trueB2 = gradientOf(costAndGradients(net, x, labels, lambda).gradients, parameters(net).find((p) => p.name === 'b2')!);

  it('max, mean, failures, worst entry and max |numeric| over entries with known errors', () => {
    // b2 has 3 entries; errors of 1e-3 and 1e-2 (relative to the value) in entries 0 and 1.
    const wrong = Float64Array.from(trueB2, (g, i) => g * (i === 0 ? 1 + 1e-3 : i === 1 ? 1 + 1e-2 : 1));
    const report = gradientCheck(net, x, labels, lambda, { only: ['b2'], analytic: { b2: wrong } });
    const b2 = report.parameters[0];
    const r0 = 1e-3 / (2 + 1e-3);
    const r1 = 1e-2 / (2 + 1e-2);
    expect(b2.failures).toBe(2);
    expect(b2.belowFloor).toBe(0);
    expect(b2.maxRelativeError).toBeCloseTo(r1, 8);
    expect(b2.meanRelativeError).toBeCloseTo((r0 + r1) / 3, 8);
    expect(b2.worst!.index).toEqual([1]);
    expect(b2.maxAbsNumeric).toBeCloseTo(Math.max(...Array.from(trueB2, Math.abs)), 8);
    expect(b2.passed).toBe(false);
  });

  it('entries excused by a large absolute floor are counted in belowFloor, left out of max and mean, and rank below counted ones', () => {
    const wrong = Float64Array.from(trueB2, (g, i) => g * (i === 0 ? 1 + 1e-3 : i === 1 ? 1 + 1e-2 : 1));
    const report = gradientCheck(net, x, labels, lambda, { only: ['b2'], analytic: { b2: wrong }, absoluteFloor: 1 });
    const b2 = report.parameters[0];
    expect(b2.belowFloor).toBe(2);
    expect(b2.failures).toBe(0);
    expect(b2.passed).toBe(true);
    expect(b2.maxRelativeError).toBeLessThan(1e-6);
    expect(b2.meanRelativeError).toBe(b2.maxRelativeError); // one counted entry: mean = max
    expect(b2.worst!.index).toEqual([2]);
    // All three excused: the worst is the largest |diff| (entry 1).
    const allWrong = Float64Array.from(trueB2, (g, i) => g * (1 + 1e-3 * (i + 1)));
    const all = gradientCheck(net, x, labels, lambda, { only: ['b2'], analytic: { b2: allWrong }, absoluteFloor: 1 }).parameters[0];
    expect(all.belowFloor).toBe(3);
    expect(all.meanRelativeError).toBe(0);
    const largest = Array.from(trueB2, (g, i) => Math.abs(g) * 1e-3 * (i + 1));
    expect(all.worst!.index).toEqual([largest.indexOf(Math.max(...largest))]);
  });

  it('maxEntriesPerParameter perturbs that many distinct entries, in increasing order, chosen by the seed; a limit ≥ the size checks all', () => {
    const perturbed = (seed: number, limit: number) => {
      const base = Float64Array.from(net.layers[0].W.data);
      const seen: number[] = [];
      const spy = (n: Network, input: typeof x): ForwardResult => {
        const moved = Array.from(n.layers[0].W.data).findIndex((v, i) => v !== base[i]);
        if (moved >= 0 && seen.at(-1) !== moved) seen.push(moved);
        return forward(n, input, 'train');
      };
      const report = gradientCheck(net, x, labels, lambda, { only: ['W1'], maxEntriesPerParameter: limit, seed, numericForward: spy });
      expect(report.parameters[0].evaluated).toBe(Math.min(limit, 20));
      return seen;
    };
    const a = perturbed(1, 5);
    expect(a).toHaveLength(5);
    expect([...a].sort((p, q) => p - q)).toEqual(a);
    expect(new Set(a).size).toBe(5);
    const others = [2, 3, 4, 5].map((seed) => perturbed(seed, 5).join());
    expect(others.some((o) => o !== a.join())).toBe(true);
    expect(perturbed(1, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(perturbed(1, 99)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('directional mode: a flip on the minus pass alone skips the direction; report entries are [direction]', () => {
    let calls = 0;
    const flipMinus = (n: Network, input: typeof x): ForwardResult => {
      const result = forward(n, input, 'train');
      // Calls: base, then per direction plus, minus; flip on every minus pass.
      if (calls++ > 0 && calls % 2 === 1) for (let i = 0; i < result.layers[0].preActivation.data.length; i++) result.layers[0].preActivation.data[i] *= -1;
      return result;
    };
    const skipped = gradientCheck(net, x, labels, lambda, { only: ['W1'], mode: 'directional', directions: 3, numericForward: flipMinus }).parameters[0];
    expect(skipped).toMatchObject({ evaluated: 3, skippedKinks: 3, passed: false });
    const ok = gradientCheck(net, x, labels, lambda, { only: ['W1'], mode: 'directional', directions: 3 }).parameters[0];
    expect(ok).toMatchObject({ evaluated: 3, skippedKinks: 0, passed: true, analyticExactlyZero: false });
    expect(ok.worst!.index).toHaveLength(1);
    expect(ok.worst!.index[0]).toBeLessThan(3);
    const b1 = gradientCheck(net, x, labels, lambda, { only: ['b1'], mode: 'directional', directions: 2 }).parameters[0];
    expect(b1.analyticExactlyZero).toBe(true);
  });
});

describe('scaleShiftForward with only one of γ, β (batch-norm.ts)', () => {
  it('applies γ alone, β alone, both, or neither', () => {
    const xhat = fromRows([[1, -2], [0.5, 3]]);
    const gamma = Float64Array.from([2, 3]);
    const beta = Float64Array.from([10, 20]);
    expect(Array.from(scaleShiftForward(xhat, gamma, null).data)).toEqual([2, -6, 1, 9]);
    expect(Array.from(scaleShiftForward(xhat, null, beta).data)).toEqual([11, 18, 10.5, 23]);
    expect(Array.from(scaleShiftForward(xhat, gamma, beta).data)).toEqual([12, 14, 11, 29]);
    expect(Array.from(scaleShiftForward(xhat, null, null).data)).toEqual([1, -2, 0.5, 3]);
  });
});

describe('decimal oracle corners (decimal-oracle.ts)', () => {
  const spec: NetworkCaseSpec = { inputDim: 3, hiddenDims: [4], classes: 3, batch: 5, batchNorm: true, bnAffine: false, lambda: 0.1, seed: 4 };

  it('BN without γ/β: decimal cost and gradients agree with float64', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    expect(decimalCost(net, x, labels, lambda).toNumber()).toBeCloseTo(costAndGradients(net, x, labels, lambda).cost, 12);
    const dec = decimalGradients(net, x, labels, lambda, { only: ['W1'] });
    const ref = gradientOf(costAndGradients(net, x, labels, lambda).gradients, parameters(net)[0]);
    for (let i = 0; i < ref.length; i++) expect(dec.W1[i]).toBeCloseTo(ref[i], 9);
  });

  it('the default mode is training mode for the cost and for the gradients', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ ...spec, bnAffine: true });
    net.layers[0].bn!.runningMean.set([1, -1, 0.5, 2]);
    net.layers[0].bn!.runningVar.set([4, 0.25, 2, 9]);
    const train = decimalCost(net, x, labels, lambda, { mode: 'train' }).toNumber();
    expect(decimalCost(net, x, labels, lambda).toNumber()).toBe(train);
    expect(decimalCost(net, x, labels, lambda, { mode: 'inference' }).toNumber()).not.toBeCloseTo(train, 3);
    const byDefault = decimalGradients(net, x, labels, lambda, { only: ['gamma1'] });
    const inTrain = decimalGradients(net, x, labels, lambda, { only: ['gamma1'], mode: 'train' });
    expect(Array.from(byDefault.gamma1)).toEqual(Array.from(inTrain.gamma1));
  });

  it('differentiates γ and β each with respect to itself', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ ...spec, bnAffine: true });
    net.layers[0].bn!.gamma!.set([1.5, 0.5, 1, 2]);
    net.layers[0].bn!.beta!.set([0.3, -0.2, 0.1, 0.4]);
    const dec = decimalGradients(net, x, labels, lambda, { only: ['gamma1', 'beta1'] });
    const grads = costAndGradients(net, x, labels, lambda).gradients;
    const refs = parameters(net);
    for (const name of ['gamma1', 'beta1']) {
      const ref = gradientOf(grads, refs.find((p) => p.name === name)!);
      for (let i = 0; i < ref.length; i++) expect(dec[name][i], `${name}[${i}]`).toBeCloseTo(ref[i], 9);
    }
  });
});

describe('argument checks at their boundaries', () => {
  it('describeValue: strings of 40 characters are shown whole, longer ones cut; null and undefined by name', () => {
    expect(describeValue('x'.repeat(40))).toBe(JSON.stringify('x'.repeat(40)));
    expect(describeValue('x'.repeat(41))).toBe(JSON.stringify(`${'x'.repeat(40)}…`));
    expect(describeValue(null)).toBe('null');
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue({})).toBe('object');
  });

  it('runningAverageKeep 0 and 1 are accepted; sigma 0 is accepted; η = 0 and ρ = 0 are accepted by trainStep', () => {
    const base = { inputDim: 2, hiddenDims: [2], classes: 2 };
    expect(createNetwork({ ...base, runningAverageKeep: 0 }).config.runningAverageKeep).toBe(0);
    expect(createNetwork({ ...base, runningAverageKeep: 1 }).config.runningAverageKeep).toBe(1);
    expectArgumentError(() => createNetwork({ ...base, runningAverageKeep: -0.1 }), { argument: 'runningAverageKeep', actual: '-0.1' });
    const net = createNetwork(base, { kind: 'normal', sigma: 0 }, createPrng(1));
    expect(Array.from(net.layers[0].W.data).every((v) => v === 0)).toBe(true);
    expectArgumentError(() => createNetwork(base, { kind: 'normal', sigma: -1 }), { argument: 'init.sigma', expected: 'a finite number >= 0', actual: '-1' });
    expectArgumentError(() => createNetwork(base, null as never), { argument: 'init.kind', actual: 'undefined' });
    expectArgumentError(() => createNetwork({ ...base, hiddenDims: 3 as never }), { argument: 'hiddenDims', expected: 'an array of positive integers', actual: '3' });
    expectArgumentError(() => createNetwork({ ...base, hiddenDims: ['2' as never] }), { argument: 'hiddenDims[0]', expected: 'a positive integer', actual: '"2"' });
    const x = fromRows([[1, 2], [3, 4]]);
    const velocity = createVelocity(net);
    expect(() => trainStep(net, velocity, x, [0, 1], 0, { learningRate: 0, momentum: 0 })).not.toThrow();
    expectArgumentError(() => trainStep(net, velocity, x, [0, 1], 0, { learningRate: -1e-9, momentum: 0 }), { op: 'trainStep', argument: 'learningRate', actual: '-1e-9' });
  });
});

describe('small corners (matrix.ts, sgd.ts)', () => {
  it('fromRows([]) is the 0 × 0 matrix', () => {
    expect(fromRows([])).toMatchObject({ rows: 0, cols: 0 });
  });

  it('gradientOf names a parameter the gradients do not have', () => {
    const net = createNetwork({ inputDim: 2, hiddenDims: [2], classes: 2, batchNorm: true });
    const noBn = createNetwork({ inputDim: 2, hiddenDims: [2], classes: 2, batchNorm: false });
    const x = fromRows([[1, 2], [3, 4]]);
    const grads = costAndGradients(noBn, x, [0, 1], 0).gradients;
    expect(() => gradientOf(grads, parameters(net).find((p) => p.name === 'gamma1')!)).toThrow('no gradient for gamma1');
  });
});

describe('gradientCheck reporting and arguments (gradient-check.ts)', () => {
  const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };
  const { net, x, labels, lambda } = buildNetworkCase(spec);
  const grads = costAndGradients(net, x, labels, lambda).gradients;
  const analytic = () => Object.fromEntries(parameters(net).map((p) => [p.name, Float64Array.from(gradientOf(grads, p))]));

  it('names its error class and lists every failing parameter on its own line with the count of failing entries', () => {
    const wrong = analytic();
    wrong.W1[3] *= 1.5;
    wrong.b2[1] *= 1.5;
    const report = gradientCheck(net, x, labels, lambda, { analytic: wrong });
    const lines = describeFailures(report).split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^gradient mismatch for W1\[0,3\]: .*; 1 of 20 compared entries fail$/);
    expect(lines[1]).toMatch(/^gradient mismatch for b2\[1\]: .*; 1 of 3 compared entries fail$/);
    expect(new GradientCheckError(report).name).toBe('GradientCheckError');
  });

  it('a NaN analytic entry against a finite numeric one fails', () => {
    const wrong = analytic();
    wrong.gamma1[2] = NaN;
    const report = gradientCheck(net, x, labels, lambda, { analytic: wrong, only: ['gamma1'] });
    expect(report.parameters[0]).toMatchObject({ failures: 1, passed: false, maxRelativeError: Infinity });
  });

  it('accepts maxEntriesPerParameter 1 and directions 1; names the expectations of bad ones', () => {
    expect(gradientCheck(net, x, labels, lambda, { only: ['W1'], maxEntriesPerParameter: 1 }).parameters[0].evaluated).toBe(1);
    expect(gradientCheck(net, x, labels, lambda, { only: ['W1'], mode: 'directional', directions: 1 }).parameters[0].evaluated).toBe(1);
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { maxEntriesPerParameter: 0 }), { argument: 'maxEntriesPerParameter', expected: 'a positive integer', actual: '0' });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { only: ['W7'] }), { argument: 'only', expected: 'parameter names among W1, b1, gamma1, beta1, W2, b2', actual: "'W7'" });
  });

  it('forward defaults to training mode', () => {
    const other = buildNetworkCase(spec).net;
    other.layers[0].bn!.runningMean.set([1, -1, 0.5, 2, 0]);
    expect(Array.from(forward(other, x).probs.data)).toEqual(Array.from(forward(other, x, 'train').probs.data));
    expect(Array.from(forward(other, x).probs.data)).not.toEqual(Array.from(forward(other, x, 'inference').probs.data));
  });
});

// Written against survivors of the first run over the double-double code (commit d57040e).

describe('DoubleDoubleCost arguments (double-double-model.ts)', () => {
  const bn = buildNetworkCase({ inputDim: 2, hiddenDims: [3], classes: 2, batch: 3, batchNorm: true, bnAffine: true, lambda: 0, seed: 1 });

  it('rejects a λ that is not finite, naming what it expects', () => {
    for (const lambda of [Infinity, NaN])
      expectArgumentError(() => new DoubleDoubleCost(bn.net, bn.x, bn.labels, lambda), { op: 'DoubleDoubleCost', argument: 'lambda', expected: 'a finite number >= 0', actual: String(lambda) });
  });

  it('an entry index must lie in [0, size − 1] of that parameter: a bias has `cols` entries, not those of W', () => {
    const evaluator = new DoubleDoubleCost(bn.net, bn.x, bn.labels, 0);
    expect(evaluator.atEntry({ kind: 'b', layer: 0 }, 2, 1e-3)).not.toBeNull();
    expectArgumentError(() => evaluator.atEntry({ kind: 'b', layer: 0 }, 3, 1e-3), { op: 'DoubleDoubleCost.atEntry', argument: 'index', expected: 'an integer in [0, 2]', actual: '3' });
    expectArgumentError(() => evaluator.atEntry({ kind: 'W', layer: 0 }, -1, 1e-3), { argument: 'index', actual: '-1' });
    expectArgumentError(() => evaluator.atEntry({ kind: 'W', layer: 0 }, 0, Infinity), { argument: 'step', expected: 'a finite number', actual: 'Infinity' });
  });

  it('γ and β exist only on batch-norm layers with an affine transform', () => {
    const plain = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, batchNorm: false });
    const bare = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, batchNorm: true, bnAffine: false });
    for (const net of [plain, bare]) {
      const evaluator = new DoubleDoubleCost(net, bn.x, bn.labels, 0);
      for (const kind of ['gamma', 'beta'] as const) {
        expectArgumentError(() => evaluator.atEntry({ kind, layer: 0 }, 0, 1e-3), {
          op: 'DoubleDoubleCost.atEntry', argument: 'ref', expected: 'a parameter of the network', actual: `"${kind}" of layer 0`,
        });
        expectArgumentError(() => evaluator.alongDirection({ kind, layer: 0 }, [1, 0, 0], 1e-3), { op: 'DoubleDoubleCost.alongDirection', argument: 'ref' });
      }
    }
  });
});

describe('a unit whose pre-activation is exactly 0 (double-double-model.ts)', () => {
  it('is inactive in both precisions: the checks skip the same kinks, none of them on W1', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 3, hiddenDims: [4, 3], classes: 3, batch: 5, batchNorm: false, bnAffine: false, lambda: 0.1, seed: 3 });
    // Unit 1 of the second hidden layer: column 1 of W2 and b2[1] are 0, so its pre-activation is
    // exactly 0 on every row, and stays so when W1, b1 or another column of W2 moves.
    const W2 = net.layers[1].W;
    for (let i = 0; i < W2.rows; i++) W2.data[i * W2.cols + 1] = 0;
    net.layers[1].b[1] = 0;
    const kinks = (report: ReturnType<typeof gradientCheck>) => Object.fromEntries(report.parameters.map((p) => [p.name, p.skippedKinks]));
    const dd = gradientCheck(net, x, labels, lambda, { stencil: 4 });
    const float64 = gradientCheck(net, x, labels, lambda, { stencil: 4, precision: 'float64' });
    expect(kinks(dd)).toEqual(kinks(float64));
    expect(kinks(dd)).toMatchObject({ W1: 0, b1: 0 });
    expect(dd.passed).toBe(true);
    // Along a direction of W2 that leaves column 1 alone, nothing changes sign either.
    const u = new Float64Array(W2.data.length).map((_, k) => (k % W2.cols === 1 ? 0 : 1));
    expect(new DoubleDoubleCost(net, x, labels, lambda).alongDirection({ kind: 'W', layer: 1 }, u, 1e-6)).not.toBeNull();
  });
});

describe('double-double edges (double-double.ts)', () => {
  it('ddToNumber rounds hi + lo, ties to even: 1 + 2^-53 → 1', () => {
    const half = twoSum(1, 2 ** -53);
    expect([half.hi, half.lo]).toEqual([1, 2 ** -53]);
    expect(ddToNumber(half)).toBe(1);
  });

  it('ddExp at its cut-offs still computes: e^709.78 is finite, e^-745.1 is the smallest subnormal', () => {
    const high = ddExp(ddFromNumber(709.78));
    expect(Number.isFinite(high.hi)).toBe(true);
    expect(Math.abs(high.hi - Math.exp(709.78))).toBeLessThanOrEqual(1e-15 * Math.exp(709.78));
    expect(ddExp(ddFromNumber(-745.1)).hi).toBe(Number.MIN_VALUE);
    // Beyond them the limits themselves, not a scaling that overflows (lo would be nonzero or NaN).
    expect(ddExp(ddFromNumber(710))).toEqual({ hi: Infinity, lo: 0 });
    expect(ddExp(ddFromNumber(Infinity))).toEqual({ hi: Infinity, lo: 0 });
    expect(ddExp(ddFromNumber(-Infinity))).toEqual({ hi: 0, lo: 0 });
  });
});

describe('gradientCheck precision arguments (gradient-check.ts)', () => {
  const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 });
  const trainForward = (n: Network, input: typeof x): ForwardResult => forward(n, input, 'train');

  it('names the operation and what it expects when the precision is unknown or a float64 forward meets double-double', () => {
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { precision: 'float128' as 'float64' }), { op: 'gradientCheck', argument: 'precision' });
    for (const options of [{ stencil: 4 as const }, { stencil: 2 as const, precision: 'double-double' as const }])
      expectArgumentError(() => gradientCheck(net, x, labels, lambda, { ...options, numericForward: trainForward }), {
        op: 'gradientCheck', argument: 'numericForward', expected: "absent with precision 'double-double' (a float64 forward pass)", actual: 'a function',
      });
    expect(gradientCheck(net, x, labels, lambda, { only: ['b2'], stencil: 4, precision: 'float64', numericForward: trainForward }).passed).toBe(true);
  });
});

describe('argument errors say what was expected (survivors of the first run: message texts)', () => {
  const config = { inputDim: 3, hiddenDims: [2], classes: 2, batchNorm: true };

  // Kills network.ts:107:55 (the `expected` text of a bad init.sigma).
  it('createNetwork: a negative sigma names "a finite number >= 0"', () => {
    expectArgumentError(() => createNetwork(config, { kind: 'normal', sigma: -1 }, createPrng(1)), {
      op: 'createNetwork', argument: 'init.sigma', expected: 'a finite number >= 0', actual: '-1',
    });
  });

  // Kills weights-format.ts:64:111 (the `expected` text) and 64:42 (`data.config === null` → false:
  // a null config then fails inside resolveConfig with a TypeError instead).
  it('networkFromWeights: a null or missing config is an argument error naming config, not a TypeError', () => {
    const file = networkToWeights(createNetwork(config, { kind: 'he' }, createPrng(2)), 'float64');
    for (const [value, actual] of [[null, 'null'], [undefined, 'undefined'], [3, '3']] as const) {
      expectArgumentError(() => networkFromWeights({ ...file, config: value as unknown as typeof file.config }), {
        op: 'networkFromWeights', argument: 'config', expected: 'a network config object', actual,
      });
    }
  });
});
