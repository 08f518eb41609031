import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Decimal } from 'decimal.js';
import { decimalCost, decimalGradients, exactDecimal } from './decimal-oracle.js';
import { fromRows } from './matrix.js';
import { cost, costAndGradients, type Mode } from './model.js';
import { createNetwork, parameters } from './network.js';
import { gradientOf } from './sgd.js';
import { buildNetworkCase, networkCaseArb, randomizeRunningAverages, SMALL_LIMITS } from './test-support/arbitraries.js';

/*
Tolerances, measured over 600 generated small networks (both modes, random running averages):
  - cost: float64 vs 50 digits differed by ≤ 1.4e-15 relative; we require 1e-12. (Before the
    cross-entropy fix in ops.ts, a confident network's cost ~1e-5 was off by 2e-11: see below.)
  - gradients: backward accumulates rounding of about ε_mach times the magnitudes it sums, which
    are bounded by the network's largest gradient G, not by the entry itself: an entry that is the
    small difference of large terms (BN's g − mean g − ŝ·mean(g ŝ), dead units, the bias before BN)
    is only resolved to ~1e-14·G absolute. Measured: |a − d| ≤ 5e-14·G everywhere, and
    ≤ 1.3e-12 relative where |d| ≥ 1e-3·G. We require |a − d| ≤ 1e-9·|d| + 1e-12·G.
*/
const COST_RELATIVE = 1e-12;
const GRADIENT_RELATIVE = 1e-9;
const GRADIENT_ABSOLUTE_OF_SCALE = 1e-12;

describe('decimal oracle', () => {
  // One test per mode: each case costs ~0.4 s of decimal arithmetic, and a single synchronous test
  // of a minute or more trips vitest's worker RPC timeout on a loaded machine.
  it.each<Mode>(['train', 'inference'])('agrees with the float64 cost (1e-12 relative) and analytic gradients (1e-9 relative + 1e-12 of the gradient scale), %s mode', (mode) => {
    fc.assert(
      fc.property(networkCaseArb(SMALL_LIMITS), (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        // Running averages far from the defaults, so inference mode differs from training mode.
        randomizeRunningAverages(net, spec.seed ^ 0x5bd1e995);

        const float = costAndGradients(net, x, labels, lambda, mode);
        const exactCost = decimalCost(net, x, labels, lambda, { mode }).toNumber();
        const exact = decimalGradients(net, x, labels, lambda, { mode });

        expect(Math.abs(float.cost - exactCost)).toBeLessThanOrEqual(COST_RELATIVE * Math.abs(exactCost));
        const scale = Math.max(...Object.values(exact).flatMap((g) => Array.from(g, Math.abs)));
        for (const ref of parameters(net)) {
          const analytic = gradientOf(float.gradients, ref);
          const oracle = exact[ref.name];
          for (let i = 0; i < oracle.length; i++) {
            const bound = GRADIENT_RELATIVE * Math.abs(oracle[i]) + GRADIENT_ABSOLUTE_OF_SCALE * scale;
            if (!(Math.abs(analytic[i] - oracle[i]) <= bound))
              expect.fail(`${ref.name}[${i}] (${mode}): analytic ${analytic[i]}, decimal ${oracle[i]}, bound ${bound}`);
          }
        }
      }),
      { numRuns: Math.ceil((fc.readConfigureGlobal().numRuns ?? 100) / 2) },
    );
  });

  it('agrees on a confident network whose cost is ~1.6e-5 (shrunk property failure)', () => {
    // Regression: the float64 cross-entropy took log(1 + t) with t ≈ 1e-5 and was 2e-11 off relative.
    const spec = { inputDim: 3, hiddenDims: [2], classes: 2, batch: 2, batchNorm: true, bnAffine: true, lambda: 0, seed: 882438116 };
    const { net, x, labels, lambda } = buildNetworkCase(spec);
    randomizeRunningAverages(net, spec.seed ^ 0x5bd1e995);

    const float = cost(net, x, labels, lambda, 'inference').cost;
    const exact = decimalCost(net, x, labels, lambda, { mode: 'inference' }).toNumber();

    expect(exact).toBeLessThan(1e-4);
    expect(Math.abs(float - exact)).toBeLessThanOrEqual(COST_RELATIVE * exact);
  });

  it('computes a hand-checkable cost: one linear layer, known logits', () => {
    // W = 0, so every row's logits are b = (0, ln 2, ln 3).
    const net = createNetwork({ inputDim: 1, hiddenDims: [], classes: 3 });
    net.layers[0].W.data.fill(0);
    net.layers[0].b.set([0, Math.log(2), Math.log(3)]);
    const x = fromRows([[1], [-1]]);

    const j = decimalCost(net, x, [2, 0], 0);

    // Softmax (1/6, 1/3, 1/2): losses ln 2 and ln 6.
    expect(j.toNumber()).toBeCloseTo((Math.log(2) + Math.log(6)) / 2, 15);
  });

  it('differs between modes when the running averages differ from the batch statistics', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 3, hiddenDims: [3], classes: 2, batch: 4, batchNorm: true, bnAffine: true, lambda: 0, seed: 6 });
    randomizeRunningAverages(net, 1);

    const train = decimalCost(net, x, labels, lambda, { mode: 'train' }).toNumber();
    const inference = decimalCost(net, x, labels, lambda, { mode: 'inference' }).toNumber();

    expect(Math.abs(train - inference)).toBeGreaterThan(1e-6);
    expect(inference).toBeCloseTo(cost(net, x, labels, lambda, 'inference').cost, 13);
    // The gradients follow the mode too (inference: running averages, no batch statistics).
    const trainW2 = decimalGradients(net, x, labels, lambda, { mode: 'train', only: ['W2'] }).W2;
    const inferenceW2 = decimalGradients(net, x, labels, lambda, { mode: 'inference', only: ['W2'] }).W2;
    expect(Math.max(...trainW2.map((g, i) => Math.abs(g - inferenceW2[i])))).toBeGreaterThan(1e-6);
  });

  it('reads every float64 exactly, not as its shortest decimal (which is up to half an ulp off)', () => {
    const D = Decimal.clone({ precision: 100 });
    expect(exactDecimal(D, 0.1).toString()).toBe('0.1000000000000000055511151231257827021181583404541015625');
    expect(exactDecimal(D, -0.1).eq(exactDecimal(D, 0.1).neg())).toBe(true);
    expect(exactDecimal(D, 2 ** 80).toFixed()).toBe('1208925819614629174706176');
    expect(exactDecimal(D, 3).toString()).toBe('3');
    expect(exactDecimal(D, 2 ** -1074).eq(new D(2).pow(-1074))).toBe(true);
    expect(exactDecimal(D, -Infinity).toString()).toBe('-Infinity');
  });

  it('only restricts the parameters differentiated', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 2, hiddenDims: [2], classes: 2, batch: 3, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 2 });

    expect(Object.keys(decimalGradients(net, x, labels, lambda, { only: ['gamma1', 'W2'] }))).toEqual(['gamma1', 'W2']);
  });
});
