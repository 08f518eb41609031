import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { decimalGradients } from './decimal-oracle.js';
import {
  assertGradientCheck, checkGradients, DEFAULT_GRADIENT_CHECK, DEFAULT_STEP, describeFailures, gradientCheck, GradientCheckError, relativeError, type GradientCheckReport,
} from './gradient-check.js';
import { fromRows } from './matrix.js';
import { cost, costAndGradients, forward, updateRunningAverages, type ForwardResult } from './model.js';
import { cloneNetwork, createNetwork, parameters, type Network } from './network.js';
import { createPrng, nextNormal } from './prng.js';
import { gradientOf } from './sgd.js';
import { softmax } from './ops.js';
import {
  bnVarianceToEpsRatio, buildNetworkCase, FULL_LIMITS, networkCaseArb, randomizeShifts, type NetworkCaseSpec,
} from './test-support/arbitraries.js';
import { expectArgumentError, maxAbsDiff } from './test-support/assertions.js';

/*
Note [Ill-conditioned batch norm]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Per feature, training-mode BN is ŝ = (s − μ)/sqrt(σ² + ε): a smooth function whose length scale is
sqrt(σ² + ε). When a feature's batch variance is comparable to ε (σ²/ε ≲ 10: batch 2, or a
width-1 layer whose ReLU zeroes most rows), that scale is ~sqrt(ε) ≈ 3e-3 and two things happen
to a centered difference with h = 1e-6:
  - truncation error h²·J'''/6 is no longer negligible: measured 2e-6 … 5e-5 relative, falling
    100× per 10× smaller h (the h² signature);
  - rounding in s − μ is amplified by 1/sqrt(σ² + ε), so the difference quotient's noise exceeds
    the checker's floor 64·ε_mach·|J|/h, which assumes a well-conditioned J.
In those cases the analytic gradient still agrees with the 50-digit decimal oracle to ~1e-12
(fixtures below), i.e. it is the numeric side that is inaccurate. The property therefore checks
networks whose BN features all have σ²/ε ≥ 10 (about 99 % of generated cases; over 20 000
generated cases none of those failed, while 13 of the 234 ill-conditioned ones did), and the
ill-conditioned corner is covered by the fixtures and by the decimal-oracle property.
*/
const ILL_CONDITIONED_RATIO = 10;

// Collected across the property's runs; printed with REFERENCE_TEST_SUMMARY=1.
const summary = {
  runs: 0,
  illConditionedSkipped: 0,
  evaluated: 0,
  skippedKinks: 0,
  belowFloor: 0,
  worstEntries: 0,
  worstDirectional: 0,
  sumMeanRelative: 0,
  parametersChecked: 0,
  worstBiasNumericOverFloor: 0,
};
afterAll(() => {
  if (process.env.REFERENCE_TEST_SUMMARY === '1')
    console.log('gradient-check property summary', { ...summary, meanRelativeError: summary.sumMeanRelative / summary.parametersChecked });
});

/**
 * `passed` only says no compared entry failed; entries skipped as ReLU kinks are not compared, so a
 * numeric side whose ReLU pattern keeps changing "passes" vacuously. Trust a pass only when
 * skipped entries are a small minority.
 */
function isTrustworthyPass(report: GradientCheckReport): boolean {
  const evaluated = report.parameters.reduce((n, p) => n + p.evaluated, 0);
  const skipped = report.parameters.reduce((n, p) => n + p.skippedKinks, 0);
  return report.passed && skipped < 0.25 * evaluated;
}

function parameterCheck(report: GradientCheckReport, name: string) {
  const check = report.parameters.find((p) => p.name === name);
  if (!check) throw new Error(`no check for ${name}`);
  return check;
}

describe('gradient check property', () => {
  it('every analytic gradient matches centered differences (entries and directional) on random architectures', () => {
    fc.assert(
      fc.property(networkCaseArb(FULL_LIMITS), (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        const wellConditioned = bnVarianceToEpsRatio(net, x) >= ILL_CONDITIONED_RATIO;
        if (!wellConditioned) summary.illConditionedSkipped++;
        // Note [Ill-conditioned batch norm]: a property of the generated network, not of the inputs.
        fc.pre(wellConditioned);

        const entries = gradientCheck(net, x, labels, lambda);
        const directional = gradientCheck(net, x, labels, lambda, { mode: 'directional' });

        // Throws GradientCheckError naming the worst entry; fast-check adds seed and path.
        assertGradientCheck(entries);
        assertGradientCheck(directional);
        expect(isTrustworthyPass(entries)).toBe(true);
        for (const p of entries.parameters) {
          expect(p.maxRelativeError).toBeLessThanOrEqual(1e-6);
          if (net.config.batchNorm && /^b\d+$/.test(p.name) && p.name !== `b${net.layers.length}`) {
            // The bias before BN: exactly 0 analytically, rounding noise numerically.
            expect(p.analyticExactlyZero).toBe(true);
            expect(p.maxAbsNumeric).toBeLessThanOrEqual(entries.absoluteFloor);
            summary.worstBiasNumericOverFloor = Math.max(summary.worstBiasNumericOverFloor, p.maxAbsNumeric / entries.absoluteFloor);
          }
          summary.evaluated += p.evaluated;
          summary.skippedKinks += p.skippedKinks;
          summary.belowFloor += p.belowFloor;
          summary.worstEntries = Math.max(summary.worstEntries, p.maxRelativeError);
          summary.sumMeanRelative += p.meanRelativeError;
          summary.parametersChecked++;
        }
        for (const p of directional.parameters) summary.worstDirectional = Math.max(summary.worstDirectional, p.maxRelativeError);
        summary.runs++;
      }),
    );

    // Kinks (a ReLU input within reach of 0) are skipped; they must stay a small minority.
    expect(summary.evaluated).toBeGreaterThan(0);
    expect(summary.skippedKinks).toBeLessThan(0.25 * summary.evaluated);
    // ≤ 1e-6 is the worst case; the typical entry is far better.
    expect(summary.sumMeanRelative / summary.parametersChecked).toBeLessThan(1e-7);
  });
});

describe('ill-conditioned batch norm fixtures (shrunk property failures)', () => {
  // Found by the property before the precondition existed; see Note [Ill-conditioned batch norm].
  const fixtures: Array<{ spec: NetworkCaseSpec; failing: string }> = [
    { spec: { inputDim: 19, hiddenDims: [10, 8], classes: 5, batch: 2, batchNorm: true, bnAffine: true, lambda: 0, seed: 29 }, failing: 'W1' },
    { spec: { inputDim: 5, hiddenDims: [3, 3, 3, 11], classes: 4, batch: 2, batchNorm: true, bnAffine: true, lambda: 0, seed: 1265267548 }, failing: 'W1' },
    { spec: { inputDim: 5, hiddenDims: [1, 1, 9, 6], classes: 3, batch: 9, batchNorm: true, bnAffine: true, lambda: 0, seed: 1059333648 }, failing: 'W3' },
  ];

  it.each(fixtures)('$spec.hiddenDims, batch $spec.batch: the analytic $failing is exact, the h = 1e-6 difference is not', ({ spec, failing }) => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const ref = parameters(net).find((p) => p.name === failing)!;

    const report = gradientCheck(net, x, labels, lambda);
    const worst = parameterCheck(report, failing).worst!;
    const flat = worst.index.length === 2 ? worst.index[0] * ref.shape[1] + worst.index[1] : worst.index[0];
    const exact = decimalGradients(net, x, labels, lambda, { only: [failing] })[failing];
    const numericError = (h: number) => {
      const original = ref.values[flat];
      ref.values[flat] = original + h;
      const plus = cost(net, x, labels, lambda).cost;
      ref.values[flat] = original - h;
      const minus = cost(net, x, labels, lambda).cost;
      ref.values[flat] = original;
      return Math.abs((plus - minus) / (2 * h) - exact[flat]);
    };

    // The fixture is pinned by its seed: if PRNG or init changes, re-derive it from the property.
    expect(bnVarianceToEpsRatio(net, x), 'fixture data changed (PRNG or init?)').toBeLessThan(ILL_CONDITIONED_RATIO);
    expect(report.parameters.filter((p) => !p.passed).map((p) => p.name)).toEqual([failing]);
    // The analytic side agrees with the 50-digit oracle; the numeric side carries truncation error ∝ h².
    expect(relativeError(worst.analytic, exact[flat])).toBeLessThan(1e-10);
    expect(numericError(1e-6) / numericError(1e-5)).toBeGreaterThan(0.005);
    expect(numericError(1e-6) / numericError(1e-5)).toBeLessThan(0.02);
    // A step 10× smaller than the curvature demands brings both modes back under 1e-6.
    expect(gradientCheck(net, x, labels, lambda, { h: 1e-7 }).passed).toBe(true);
    expect(gradientCheck(net, x, labels, lambda, { h: 1e-7, mode: 'directional' }).passed).toBe(true);
  });
});

describe('purity', () => {
  it('a gradient check (both modes) leaves parameters, running averages and the caller’s PRNG untouched, and is repeatable', () => {
    fc.assert(
      fc.property(networkCaseArb({ ...FULL_LIMITS, maxDepth: 3, maxWidth: 6, maxBatch: 8 }), (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        const prng = createPrng(spec.seed);
        for (const layer of net.layers)
          if (layer.bn) layer.bn.runningMean.forEach((_, j, m) => (m[j] = nextNormal(prng)));
        const netBefore = structuredClone(net);
        const xBefore = structuredClone(x);
        const prngBefore = { ...prng };

        const first = [gradientCheck(net, x, labels, lambda), gradientCheck(net, x, labels, lambda, { mode: 'directional', seed: 5 })];
        const second = [gradientCheck(net, x, labels, lambda), gradientCheck(net, x, labels, lambda, { mode: 'directional', seed: 5 })];

        expect(net).toEqual(netBefore);
        expect(x).toEqual(xBefore);
        expect(prng).toEqual(prngBefore);
        expect(second).toEqual(first);
      }),
    );
  });

  it('a numeric forward that updates running averages (training mode) only touches the private copy, and still passes', () => {
    // Training-mode output does not read the running averages, so updating them in every
    // numeric evaluation leaves J, and therefore the numeric gradient, unchanged.
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 4, hiddenDims: [5, 4], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 3 });
    const snapshot = cloneNetwork(net);
    let calls = 0;
    const updating = (n: Network, input: typeof x): ForwardResult => {
      const result = forward(n, input, 'train');
      updateRunningAverages(n, result);
      calls++;
      return result;
    };

    const report = gradientCheck(net, x, labels, lambda, { numericForward: updating });

    expect(calls).toBeGreaterThan(1);
    expect(report.passed).toBe(true);
    expect(net).toEqual(snapshot);
  });
});

describe('the checker catches broken gradients', () => {
  const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };
  const mismatchLine = /^gradient mismatch for (\w+)\[(\d+(?:,\d+)?)\]: analytic (-?\d\.\d+e[+-]\d+), numeric (-?\d\.\d+e[+-]\d+), .*rel err (\d\.\d+e[+-]\d+)/;

  it('a parameter whose every entry sits at a ReLU kink is reported as not verified, never as passed', () => {
    // Arrange: the numeric side flips every ReLU sign on each perturbed pass (the first call is the
    // unperturbed one), so every entry of every parameter is skipped as a kink.
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    let calls = 0;
    const flipping = (n: Network, input: typeof x): ForwardResult => {
      const result = forward(n, input, 'train');
      if (calls++ === 0) return result;
      const hidden = result.layers[0].preActivation.data;
      for (let i = 0; i < hidden.length; i++) hidden[i] = -hidden[i];
      return result;
    };

    // Act
    const report = gradientCheck(net, x, labels, lambda, { numericForward: flipping, only: ['W1'] });

    // Assert
    const w1 = parameterCheck(report, 'W1');
    expect(w1.skippedKinks).toBe(w1.evaluated);
    expect(w1.passed).toBe(false);
    expect(report.passed).toBe(false);
    expect(() => assertGradientCheck(report)).toThrow(/gradient of W1 not verified: all 20 evaluated entries were skipped at ReLU kinks/);
  });

  it('the classic bug: a numeric side computed with running statistics instead of batch statistics is rejected', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const withRunningStats = (n: Network, input: typeof x) => forward(n, input, 'inference');

    const report = gradientCheck(net, x, labels, lambda, { numericForward: withRunningStats });

    expect(report.passed).toBe(false);
    expect(isTrustworthyPass(report)).toBe(false);
    expect(parameterCheck(report, 'W1').passed).toBe(false);
    // The bias before BN: exactly 0 analytically, clearly nonzero through fixed statistics.
    expect(parameterCheck(report, 'b1').analyticExactlyZero).toBe(true);
    expect(parameterCheck(report, 'b1').passed).toBe(false);
    let thrown: unknown;
    try {
      assertGradientCheck(report);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(GradientCheckError);
    const error = thrown as GradientCheckError;
    expect(error.report).toBe(report);
    const w1 = error.message.split('\n').find((line) => line.startsWith('gradient mismatch for W1['));
    expect(w1).toMatch(mismatchLine);
    const [, , index, analytic, numeric, rel] = w1!.match(mismatchLine)!;
    const worst = parameterCheck(report, 'W1').worst!;
    expect(index).toBe(worst.index.join(','));
    expect(Number(analytic)).toBeCloseTo(worst.analytic, 5);
    expect(Number(numeric)).toBeCloseTo(worst.numeric, 5);
    expect(Number(rel)).toBeGreaterThan(1e-6);
  });

  it('running statistics that drift during the check (inference forward + updates) are rejected too', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const drifting = (n: Network, input: typeof x) => {
      updateRunningAverages(n, forward(n, input, 'train'));
      return forward(n, input, 'inference');
    };

    const report = gradientCheck(net, x, labels, lambda, { numericForward: drifting });

    // J(θ + h) and J(θ − h) see different statistics: entries either fail or, because the drift
    // moves ReLU inputs across 0, are skipped as kinks. Either way the check must not look clean.
    expect(isTrustworthyPass(report)).toBe(false);
  });

  /**
   * A numeric side whose J has an extra term κ·(W2[flat] − its current value) in the first logit:
   * zero at the checked point, so every other entry's difference quotient is unchanged, while
   * ∂/∂W2[flat] gains κ·∂J/∂z₀. Equivalent to corrupting exactly that analytic entry.
   */
  function corruptOneEntry(net: Network, flat: number) {
    const at = net.layers[1].W.data[flat];
    return (n: Network, input: Parameters<typeof forward>[1]): ForwardResult => {
      const result = forward(n, input, 'train');
      const logits = { ...result.logits, data: Float64Array.from(result.logits.data) };
      logits.data[0] += 1e-2 * (n.layers[1].W.data[flat] - at);
      return { ...result, logits, probs: softmax(logits) };
    };
  }

  it('one wrong gradient entry is reported with its parameter name and index, and nothing else fails', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const target = { row: 1, col: 2, flat: 1 * 3 + 2 };
    const extra = corruptOneEntry(net, target.flat);

    const report = gradientCheck(net, x, labels, lambda, { numericForward: extra });

    expect(report.parameters.filter((p) => !p.passed).map((p) => p.name)).toEqual(['W2']);
    const w2 = parameterCheck(report, 'W2');
    expect(w2.failures).toBe(1);
    expect(w2.worst!.index).toEqual([target.row, target.col]);
    expect(() => assertGradientCheck(report)).toThrow(/^gradient mismatch for W2\[1,2\]: analytic .*, numeric .*, rel err/);
  });

  it('directional mode catches the same single wrong entry', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const extra = corruptOneEntry(net, 5);

    const report = gradientCheck(net, x, labels, lambda, { numericForward: extra, mode: 'directional' });

    expect(report.parameters.filter((p) => !p.passed).map((p) => p.name)).toEqual(['W2']);
  });

  it('supplied analytic gradients (options.analytic) with one corrupted entry: that entry is reported, by name and index', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const own = costAndGradients(net, x, labels, lambda).gradients;
    const supplied = Object.fromEntries(parameters(net).map((ref) => [ref.name, Float64Array.from(gradientOf(own, ref))]));
    const largest = supplied.gamma1.reduce((best, v, i, a) => (Math.abs(v) > Math.abs(a[best]) ? i : best), 0);
    supplied.gamma1[largest] *= 1.001;

    const report = gradientCheck(net, x, labels, lambda, { analytic: supplied });

    expect(report.parameters.filter((p) => !p.passed).map((p) => p.name)).toEqual(['gamma1']);
    expect(parameterCheck(report, 'gamma1')).toMatchObject({ failures: 1, worst: { index: [largest] } });
    expect(() => assertGradientCheck(report)).toThrow(new RegExp(`^gradient mismatch for gamma1\\[${largest}\\]: analytic `));
  });

  it('supplied analytic gradients must give every checked parameter its full length', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);

    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { analytic: { W1: new Float64Array(3) }, only: ['W1'] }), {
      op: 'gradientCheck', argument: 'analytic.W1', expected: '20 values', actual: 'Float64Array(3)',
    });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { analytic: {}, only: ['b1'] }), { argument: 'analytic.b1', actual: 'undefined' });
  });

  it('NaN gradients fail the check (regression: NaN compared false with the tolerance and passed)', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    net.layers[1].W.data[0] = NaN;

    const entries = gradientCheck(net, x, labels, lambda, { only: ['W2'] });
    const directional = gradientCheck(net, x, labels, lambda, { only: ['W2'], mode: 'directional' });

    expect(entries.passed).toBe(false);
    expect(directional.passed).toBe(false);
    expect(() => assertGradientCheck(entries)).toThrow(GradientCheckError);
  });
});

describe('edge cases', () => {
  it('a batch of identical rows (variance 0, ε dominates) passes', () => {
    const prng = createPrng(21);
    const net = createNetwork({ inputDim: 3, hiddenDims: [4, 3], classes: 3 }, { kind: 'he' }, prng);
    randomizeShifts(net, prng);
    const row = [0.7, -1.1, 0.4];
    const x = fromRows([row, row, row, row]);
    const labels = [0, 2, 1, 2];

    checkGradients(net, x, labels, 0.1);
    checkGradients(net, x, labels, 0.1, { mode: 'directional' });
    const dW1 = costAndGradients(net, x, labels, 0.1).gradients.layers[0].W.data;

    // Identical rows stay identical whatever W1 is, so BN outputs β and the loss ignores W1:
    // only the penalty's 2λW1 remains.
    expect(maxAbsDiff(dW1, net.layers[0].W.data.map((w) => 0.2 * w))).toBeLessThan(1e-9);
  });

  it('a constant hidden feature (zero weight column) outputs exactly β, has finite gradients and passes', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 4, hiddenDims: [5, 3], classes: 3, batch: 7, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 13 });
    for (let k = 0; k < 4; k++) net.layers[0].W.data[k * 5 + 2] = 0;

    const result = forward(net, x, 'train');
    const grads = costAndGradients(net, x, labels, lambda).gradients;
    const entries = checkGradients(net, x, labels, lambda);
    checkGradients(net, x, labels, lambda, { mode: 'directional' });

    // Feature 2's score is b1[2] on every row: variance 0, ŝ = 0, output β1[2].
    const beta = net.layers[0].bn!.beta![2];
    expect(Array.from({ length: 7 }, (_, i) => result.layers[0].preActivation.data[i * 5 + 2])).toEqual(new Array(7).fill(beta));
    for (const g of grads.layers) for (const values of [g.W.data, g.b, g.gamma ?? [], g.beta ?? []]) expect(values.every(Number.isFinite)).toBe(true);
    expect(isTrustworthyPass(entries)).toBe(true);
  });

  it('k = 1 (softmax regression, no hidden layer) passes', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 6, hiddenDims: [], classes: 4, batch: 5, batchNorm: true, bnAffine: true, lambda: 0.3, seed: 2 });

    const report = checkGradients(net, x, labels, lambda);
    checkGradients(net, x, labels, lambda, { mode: 'directional' });

    expect(report.parameters.map((p) => p.name)).toEqual(['W1', 'b1']);
    expect(report.parameters.every((p) => p.skippedKinks === 0 && p.belowFloor < p.evaluated)).toBe(true);
  });

  it('one class dominating (every label the same) passes', () => {
    const { net, x, lambda } = buildNetworkCase({ inputDim: 5, hiddenDims: [6, 4], classes: 3, batch: 8, batchNorm: true, bnAffine: true, lambda: 0.01, seed: 8 });
    const labels = new Array(8).fill(2);

    checkGradients(net, x, labels, lambda);
    checkGradients(net, x, labels, lambda, { mode: 'directional' });
  });

  it('without batch norm, a batch of 1 is allowed and passes', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 3, hiddenDims: [4], classes: 2, batch: 2, batchNorm: false, bnAffine: false, lambda: 0.2, seed: 4 });
    const one = { rows: 1, cols: 3, data: x.data.slice(0, 3) };

    checkGradients(net, one, labels.slice(0, 1), lambda);
  });
});

describe('report and options', () => {
  const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 });

  it('relative error is |a − n| / max(1e-8, |a| + |n|)', () => {
    expect(relativeError(1, 1)).toBe(0);
    expect(relativeError(0, 0)).toBe(0);
    expect(relativeError(2, 1)).toBeCloseTo(1 / 3, 15);
    expect(relativeError(1e-10, 0)).toBeCloseTo(1e-2, 15);
  });

  it('the default absolute floor is 64·ε·max(1, |J|)/h and the analytic side matches costAndGradients', () => {
    const report = gradientCheck(net, x, labels, lambda, { h: 2e-6 });
    const reference = costAndGradients(net, x, labels, lambda);

    expect(report.h).toBe(2e-6);
    expect(report.cost).toBe(reference.cost);
    expect(report.absoluteFloor).toBe((64 * Number.EPSILON * Math.max(1, Math.abs(reference.cost))) / 2e-6);
    expect(parameterCheck(report, 'W1').worst!.analytic).toBe(
      reference.gradients.layers[0].W.data[parameterCheck(report, 'W1').worst!.index[0] * 5 + parameterCheck(report, 'W1').worst!.index[1]],
    );
  });

  it('maxEntriesPerParameter checks a seeded random subset; only restricts the parameters', () => {
    const a = gradientCheck(net, x, labels, lambda, { maxEntriesPerParameter: 3, seed: 1, only: ['W1', 'gamma1'] });
    const b = gradientCheck(net, x, labels, lambda, { maxEntriesPerParameter: 3, seed: 1, only: ['W1', 'gamma1'] });

    expect(a.parameters.map((p) => [p.name, p.evaluated])).toEqual([['W1', 3], ['gamma1', 3]]);
    expect(b).toEqual(a);
    expect(a.passed).toBe(true);
  });

  it('a passing report describes itself as passed and checkGradients returns it', () => {
    const report = checkGradients(net, x, labels, lambda);

    expect(describeFailures(report)).toBe('gradient check passed');
    expect(assertGradientCheck(report)).toBe(report);
  });

  it('rejects bad arguments with op, argument, expectation and value', () => {
    const one = { rows: 1, cols: 4, data: x.data.slice(0, 4) };
    expectArgumentError(() => gradientCheck(net, one, [0], lambda), { op: 'gradientCheck', argument: 'X', actual: '1 row' });
    expectArgumentError(() => gradientCheck(net, x, labels, -0.5), { op: 'gradientCheck', argument: 'lambda', expected: 'a finite number >= 0', actual: '-0.5' });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { h: 0 }), { argument: 'h', expected: 'a finite number > 0', actual: '0' });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { tolerance: NaN }), { argument: 'tolerance', actual: 'NaN' });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { directions: 0 }), { argument: 'directions', expected: 'a positive integer', actual: '0' });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { maxEntriesPerParameter: 1.5 }), { argument: 'maxEntriesPerParameter', actual: '1.5' });
    // A typo would otherwise check nothing and pass.
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { only: ['W9'] }), { argument: 'only', actual: "'W9'" });
  });
});

describe('the checker itself cannot skip the bias before batch norm', () => {
  // b1 feeds a training-mode BN layer: its true gradient is exactly 0, and so is a numeric
  // gradient that was never computed. These tests make a checker that skips it fail with certainty.
  const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5, 3], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };

  it('every entry of b1 is perturbed by exactly ±h (±h and ±2h with stencil 4), on the private copy, and compared', () => {
    for (const stencil of [2, 4] as const) {
      const { net, x, labels, lambda } = buildNetworkCase(spec);
      const original = Float64Array.from(net.layers[0].b);
      const seen: number[][] = [];
      const spy = (n: Network, input: typeof x): ForwardResult => {
        seen.push(Array.from(n.layers[0].b));
        return forward(n, input, 'train');
      };
      const h = 1e-5;
      const report = gradientCheck(net, x, labels, lambda, { only: ['b1'], numericForward: spy, stencil, h });
      const b1 = parameterCheck(report, 'b1');
      const steps = stencil === 2 ? [h, -h] : [h, -h, 2 * h, -2 * h];
      // The unperturbed pass, then per entry its perturbed passes, each moving that entry alone.
      expect(seen).toHaveLength(1 + original.length * steps.length);
      expect(seen[0]).toEqual(Array.from(original));
      for (let i = 0; i < original.length; i++)
        for (let k = 0; k < steps.length; k++) {
          const values = seen[1 + i * steps.length + k];
          for (let j = 0; j < values.length; j++) expect(values[j], `entry ${i}, step ${k}, index ${j}`).toBe(j === i ? original[j] + steps[k] : original[j]);
        }
      expect(Array.from(net.layers[0].b)).toEqual(Array.from(original));
      expect(b1).toMatchObject({ evaluated: original.length, skippedKinks: 0, analyticExactlyZero: true, passed: true });
      expect(b1.maxAbsNumeric).toBeLessThanOrEqual(report.absoluteFloor);
    }
  });

  it('a wrong nonzero analytic gradient for b1 fails, down to 1e-6 (two-point) and 1e-9 (five-point)', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    for (const [stencil, size] of [[2, 1e-6], [4, 1e-9]] as const) {
      for (const index of [0, 4]) {
        const wrong = new Float64Array(5);
        wrong[index] = size;
        const report = gradientCheck(net, x, labels, lambda, { only: ['b1'], analytic: { b1: wrong }, stencil, tolerance: stencil === 4 ? 1e-9 : 1e-6 });
        expect(report.passed, `stencil ${stencil}, b1[${index}] = ${size}`).toBe(false);
        expect(() => assertGradientCheck(report)).toThrow(new RegExp(`gradient mismatch for b1\\[${index}\\]: analytic ${size.toExponential(6).replace('+', '\\+')}`));
      }
      // The true analytic value (exactly 0) passes the same check.
      expect(gradientCheck(net, x, labels, lambda, { only: ['b1'], analytic: { b1: new Float64Array(5) }, stencil }).passed).toBe(true);
    }
  });

  it('the analytic b1 of a net whose BN is switched off is nonzero and checked too (no name-based exemption)', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ ...spec, batchNorm: false });
    const report = gradientCheck(net, x, labels, lambda, { only: ['b1'] });
    const b1 = parameterCheck(report, 'b1');
    expect(b1.analyticExactlyZero).toBe(false);
    expect(b1.belowFloor).toBe(0);
    const wrong = Float64Array.from(gradientOf(costAndGradients(net, x, labels, lambda).gradients, parameters(net)[1]));
    wrong[2] *= 1.001;
    expect(gradientCheck(net, x, labels, lambda, { only: ['b1'], analytic: { b1: wrong } }).passed).toBe(false);
  });
});

describe('stencil 4 (five-point, Richardson-extrapolated)', () => {
  const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };

  it('defaults: stencil 2 with h 1e-6; stencil 4 with h 1e-3; the report says which', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    expect(DEFAULT_GRADIENT_CHECK.stencil).toBe(2);
    expect(DEFAULT_STEP).toEqual({ 2: 1e-6, 4: 1e-3 });
    expect(gradientCheck(net, x, labels, lambda, { only: ['b2'] })).toMatchObject({ stencil: 2, h: 1e-6 });
    expect(gradientCheck(net, x, labels, lambda, { only: ['b2'], stencil: 4 })).toMatchObject({ stencil: 4, h: 1e-3 });
    expectArgumentError(() => gradientCheck(net, x, labels, lambda, { stencil: 3 as 2 }), { op: 'gradientCheck', argument: 'stencil', expected: '2 or 4', actual: '3' });
  });

  it('equals (8(J(θ+h) − J(θ−h)) − (J(θ+2h) − J(θ−2h))) / 12h exactly as written, entries and directions', () => {
    // Softmax regression (k = 1): J is smooth (no ReLU kinks), so a large step shows the stencils' truncation orders.
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 3, hiddenDims: [], classes: 3, batch: 4, batchNorm: false, bnAffine: false, lambda: 0.1, seed: 3 });
    const h = 1e-2;
    const J = (n: Network) => cost(n, x, labels, lambda).cost;
    const work = cloneNetwork(net);
    const w = work.layers[0].W.data;
    const i = 4;
    const o = w[i];
    const at = (s: number) => { w[i] = o + s; const v = J(work); w[i] = o; return v; };
    const d1 = (at(h) - at(-h)) / (o + h - (o - h));
    const d2 = (at(2 * h) - at(-2 * h)) / (o + 2 * h - (o - 2 * h));
    const expected = (4 * d1 - d2) / 3;
    const exact = costAndGradients(net, x, labels, lambda).gradients.layers[0].W.data[i];
    const analytic = new Float64Array(w.length);
    analytic[i] = expected; // the checker's numeric side must equal `expected` to the last bit here
    const report = gradientCheck(net, x, labels, lambda, { only: ['W1'], analytic: { W1: analytic }, stencil: 4, h, maxEntriesPerParameter: w.length });
    const entry = parameterCheck(report, 'W1');
    // Every other entry is judged against a wrong analytic 0 and fails; entry i matches to the bit.
    expect(entry.failures).toBe(w.length - 1);
    expect(entry.worst!.index).not.toEqual([Math.floor(i / 3), i % 3]);
    // h = 1e-2: the two-point difference is off by ~h² (1e-5 relative), the five-point one by ~h⁴.
    expect(relativeError(exact, expected)).toBeLessThan(1e-8);
    expect(relativeError(exact, d1)).toBeGreaterThan(1e-7);
    const two = gradientCheck(net, x, labels, lambda, { only: ['W1'], h, tolerance: 1e-6 });
    const four = gradientCheck(net, x, labels, lambda, { only: ['W1'], h, stencil: 4, tolerance: 1e-6 });
    expect(parameterCheck(two, 'W1').maxRelativeError).toBeGreaterThan(1e-7);
    expect(parameterCheck(four, 'W1').maxRelativeError).toBeLessThan(1e-8);
    const twoDir = gradientCheck(net, x, labels, lambda, { only: ['W1'], h, mode: 'directional', directions: 3 });
    const fourDir = gradientCheck(net, x, labels, lambda, { only: ['W1'], h, stencil: 4, mode: 'directional', directions: 3 });
    expect(parameterCheck(twoDir, 'W1').maxRelativeError).toBeGreaterThan(1e-7);
    expect(parameterCheck(fourDir, 'W1').maxRelativeError).toBeLessThan(1e-8);
  });

  it('on a BN network reaches ≤ 1e-9 on every entry with no entry excused by the floor but b1’s exact zeros, and sees a 1e-6 effect the two-point check cannot', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    const report = gradientCheck(net, x, labels, lambda, { stencil: 4, tolerance: 1e-9 });
    expect(report.passed).toBe(true);
    for (const p of report.parameters) {
      if (p.name === 'b1') expect(p.analyticExactlyZero).toBe(true);
      else expect(p.belowFloor, p.name).toBe(0);
      expect(p.maxRelativeError, p.name).toBeLessThanOrEqual(1e-9);
    }
    // A relative bias of 1e-6 in one W1 entry: invisible at the two-point check's tolerance, caught here.
    const analytic = Float64Array.from(gradientOf(costAndGradients(net, x, labels, lambda).gradients, parameters(net)[0]));
    analytic[7] *= 1 + 2e-6;
    expect(gradientCheck(net, x, labels, lambda, { only: ['W1'], analytic: { W1: analytic } }).passed).toBe(true);
    const caught = gradientCheck(net, x, labels, lambda, { only: ['W1'], analytic: { W1: analytic }, stencil: 4, tolerance: 1e-9 });
    expect(caught.passed).toBe(false);
    expect(parameterCheck(caught, 'W1').failures).toBe(1);
  });

  it('judges kinks on all four perturbed passes: a flip seen only at ±2h skips the entry', () => {
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    let calls = 0;
    const flipFar = (n: Network, input: typeof x): ForwardResult => {
      const result = forward(n, input, 'train');
      // Per entry: +h, −h, +2h, −2h; flip ReLU signs on the +2h pass only.
      if (calls++ > 0 && (calls - 2) % 4 === 2) for (let i = 0; i < result.layers[0].preActivation.data.length; i++) result.layers[0].preActivation.data[i] *= -1;
      return result;
    };
    const report = gradientCheck(net, x, labels, lambda, { only: ['W1'], stencil: 4, numericForward: flipFar });
    expect(parameterCheck(report, 'W1')).toMatchObject({ evaluated: 20, skippedKinks: 20, passed: false });
    calls = 0;
    const dir = gradientCheck(net, x, labels, lambda, { only: ['W1'], stencil: 4, mode: 'directional', numericForward: flipFar });
    expect(parameterCheck(dir, 'W1')).toMatchObject({ evaluated: 4, skippedKinks: 4 });
  });
});
