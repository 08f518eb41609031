import { Decimal } from 'decimal.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decimalCost, decimalGradients, exactDecimal } from './decimal-oracle.js';
import { DoubleDoubleCost } from './double-double-model.js';
import { ddToNumber, twoSum, type DoubleDouble } from './double-double.js';
import type { Matrix } from './matrix.js';
import { cost, forward } from './model.js';
import { cloneNetwork, createNetwork, parameters, type Network } from './network.js';
import { createPrng, nextNormal } from './prng.js';
import { buildNetworkCase, networkCaseArb, SMALL_LIMITS } from './test-support/arbitraries.js';
import { expectArgumentError } from './test-support/assertions.js';

/*
The double-double cost is judged against the decimal oracle at 40 digits, which reads every float64
exactly (exactDecimal): measured agreement ~1e-32 relative; we require 25 digits (1e-25), far
beyond float64's 16 and enough for the gradient check (its rounding noise is that error over h).
A perturbed pass (rank-one update from the perturbed layer on) must equal a full pass on the
perturbed network up to double-double rounding: we require 1e-28 relative.
*/
const ORACLE_RELATIVE = 1e-25;
const REPASS_RELATIVE = 1e-28;

const JUDGE = Decimal.clone({ precision: 60 });

function relativeToDecimal(got: DoubleDouble, want: Decimal): number {
  return exactDecimal(JUDGE, got.hi).plus(exactDecimal(JUDGE, got.lo)).minus(want).abs().div(want.abs()).toNumber();
}

/**
 * Moves entry i of `values` to fl(θ + s) and returns the step taken, or null when that step is not
 * itself a float64 (fl(θ + s) − θ is exact only when |s| is not much larger than |θ|).
 */
function exactStep(values: Float64Array, i: number, s: number): number | null {
  const original = values[i];
  values[i] = original + s;
  const step = twoSum(values[i], -original);
  if (step.lo === 0) return step.hi;
  values[i] = original;
  return null;
}

function relative(a: DoubleDouble, b: DoubleDouble): number {
  return Math.abs(a.hi - b.hi + (a.lo - b.lo)) / Math.abs(b.hi);
}

/** Sign pattern of every hidden pre-activation of a float64 training-mode pass. */
function reluPattern(net: Network, x: Matrix): string {
  return forward(net, x, 'train').layers.slice(0, -1).map((c) => Array.from(c.preActivation.data, (v) => (v > 0 ? '+' : '-')).join('')).join('|');
}

describe('DoubleDoubleCost', () => {
  it('agrees with the 40-digit decimal oracle to 25 digits, and with the float64 cost to float64 rounding', () => {
    fc.assert(
      fc.property(networkCaseArb(SMALL_LIMITS), (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        const dd = new DoubleDoubleCost(net, x, labels, lambda).base;
        const exact = decimalCost(net, x, labels, lambda, { precision: 40 });
        const error = relativeToDecimal(dd, exact);
        if (!(error <= ORACLE_RELATIVE)) expect.fail(`dd cost ${dd.hi} + ${dd.lo}, decimal ${exact.toString()}: relative error ${error}`);
        expect(Math.abs(ddToNumber(dd) - cost(net, x, labels, lambda).cost)).toBeLessThanOrEqual(1e-12 * Math.abs(ddToNumber(dd)));
      }),
    );
  });

  it('atEntry equals a full pass on the perturbed network (and the oracle), or is null exactly when a ReLU input changes sign', () => {
    let flips = 0;
    let compared = 0;
    fc.assert(
      fc.property(networkCaseArb(SMALL_LIMITS), fc.double({ min: -0.5, max: 0.5, noNaN: true }), (spec, s) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        const evaluator = new DoubleDoubleCost(net, x, labels, lambda);
        const base = reluPattern(net, x);
        for (const ref of parameters(net))
          for (let i = 0; i < ref.values.length; i++) {
            // A step the float64 network can take exactly, so the full pass sees the same point.
            const moved = cloneNetwork(net);
            const target = parameters(moved).find((p) => p.name === ref.name)!;
            const step = exactStep(target.values, i, s);
            if (step === null) continue;
            const got = evaluator.atEntry(ref, i, step);
            if (reluPattern(moved, x) !== base) {
              expect(got, `${ref.name}[${i}] step ${step}`).toBeNull();
              flips++;
              continue;
            }
            expect(got, `${ref.name}[${i}] step ${step}`).not.toBeNull();
            const full = new DoubleDoubleCost(moved, x, labels, lambda).base;
            if (!(relative(got!, full) <= REPASS_RELATIVE)) expect.fail(`${ref.name}[${i}] step ${step}: ${got!.hi} + ${got!.lo} vs ${full.hi} + ${full.lo}`);
            if (i === 0) {
              const error = relativeToDecimal(got!, decimalCost(moved, x, labels, lambda, { precision: 40 }));
              if (!(error <= ORACLE_RELATIVE)) expect.fail(`${ref.name}[0] step ${step}: relative error ${error} against the oracle`);
            }
            compared++;
          }
      }),
      // Fixed cases whose steps cross kinks (several flips each), so both outcomes are exercised whatever
      // FC_NUM_RUNS is (the mutation run's 10 draws of seed 12 cross none).
      {
        examples: [
          [{ inputDim: 3, hiddenDims: [3], classes: 2, batch: 3, batchNorm: false, bnAffine: false, lambda: 0.1, seed: 2 }, 0.25],
          [{ inputDim: 3, hiddenDims: [3, 2], classes: 3, batch: 4, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 2 }, 0.25],
        ],
      },
    );
    // Both outcomes were exercised.
    expect(flips).toBeGreaterThan(0);
    expect(compared).toBeGreaterThan(flips);
  });

  it('alongDirection equals a full pass at θ + step·u (and atEntry for a one-hot u)', () => {
    fc.assert(
      fc.property(networkCaseArb(SMALL_LIMITS), fc.integer({ min: 0, max: 2 ** 31 }), (spec, seed) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        const evaluator = new DoubleDoubleCost(net, x, labels, lambda);
        const prng = createPrng(seed);
        for (const ref of parameters(net)) {
          // A random move of size ~1e-3, entry by entry a float64 step, so θ + u is the moved network exactly.
          const moved = cloneNetwork(net);
          const target = parameters(moved).find((p) => p.name === ref.name)!;
          const u = new Float64Array(ref.values.length);
          for (let k = 0; k < u.length; k++) u[k] = exactStep(target.values, k, 1e-3 * nextNormal(prng)) ?? 0;
          const got = evaluator.alongDirection(ref, u, 1);
          if (reluPattern(moved, x) !== reluPattern(net, x)) {
            expect(got).toBeNull();
            continue;
          }
          const full = new DoubleDoubleCost(moved, x, labels, lambda).base;
          if (!(relative(got!, full) <= REPASS_RELATIVE)) expect.fail(`${ref.name}: ${got!.hi} + ${got!.lo} vs ${full.hi} + ${full.lo}`);
          const oneHot = new Float64Array(ref.values.length);
          oneHot[0] = 1;
          const along = evaluator.alongDirection(ref, oneHot, 1e-4);
          const entry = evaluator.atEntry(ref, 0, 1e-4);
          expect(along === null).toBe(entry === null);
          if (along && entry && !(relative(along, entry) <= REPASS_RELATIVE)) expect.fail(`${ref.name}: one-hot direction ${along.hi} vs entry ${entry.hi}`);
        }
      }),
    );
  });

  it('resolves a centered difference at h = 1e-12, where float64 sees only rounding noise', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 3, hiddenDims: [4, 3], classes: 3, batch: 5, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 4 });
    const evaluator = new DoubleDoubleCost(net, x, labels, lambda);
    const w1 = parameters(net)[0];
    const h = 1e-12;
    const plus = evaluator.atEntry(w1, 3, h)!;
    const minus = evaluator.atEntry(w1, 3, -h)!;
    const numeric = (plus.hi - minus.hi + (plus.lo - minus.lo)) / (2 * h);
    const exact = decimalGradients(net, x, labels, lambda, { only: ['W1'] }).W1[3];
    // Truncation ~h² and double-double rounding ~1e-32/h are both far below float64 resolution.
    expect(Math.abs(numeric - exact)).toBeLessThanOrEqual(1e-13 * Math.abs(exact));
    const moved = cloneNetwork(net);
    const up = (parameters(moved)[0].values[3] += h);
    const float64 = (cost(moved, x, labels, lambda).cost - cost(net, x, labels, lambda).cost) / (up - w1.values[3]);
    expect(Math.abs(float64 - exact)).toBeGreaterThan(1e-6 * Math.abs(exact));
  });

  it('reads the network once and never changes it', () => {
    const { net, x, labels, lambda } = buildNetworkCase({ inputDim: 3, hiddenDims: [4], classes: 3, batch: 4, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 7 });
    const before = JSON.stringify(cloneNetwork(net), (_, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v));
    const evaluator = new DoubleDoubleCost(net, x, labels, lambda);
    for (const ref of parameters(net)) {
      evaluator.atEntry(ref, 0, 1e-3);
      evaluator.alongDirection(ref, new Float64Array(ref.values.length).fill(1), 1e-3);
    }
    expect(JSON.stringify(net, (_, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v))).toBe(before);
    const base = evaluator.base;
    net.layers[0].W.data[0] += 1;
    x.data[0] += 1;
    labels[0] = (labels[0] + 1) % 3;
    expect(evaluator.atEntry(parameters(net)[0], 0, 0)).toEqual(base);
  });

  it('rejects bad arguments with typed errors', () => {
    const bn = buildNetworkCase({ inputDim: 2, hiddenDims: [3], classes: 2, batch: 3, batchNorm: true, bnAffine: true, lambda: 0, seed: 1 });
    const plain = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, batchNorm: false });
    expectArgumentError(() => new DoubleDoubleCost(bn.net, bn.x, bn.labels, -1), { op: 'DoubleDoubleCost', argument: 'lambda', actual: '-1' });
    expectArgumentError(() => new DoubleDoubleCost(bn.net, { rows: 1, cols: 2, data: bn.x.data.slice(0, 2) }, [0], 0), { op: 'DoubleDoubleCost', argument: 'X' });
    expectArgumentError(() => new DoubleDoubleCost(bn.net, bn.x, [0, 1, 5], 0), { op: 'DoubleDoubleCost', argument: 'labels[2]' });
    const evaluator = new DoubleDoubleCost(bn.net, bn.x, bn.labels, 0);
    expectArgumentError(() => evaluator.atEntry({ kind: 'W', layer: 0 }, 6, 1e-3), { op: 'DoubleDoubleCost.atEntry', argument: 'index', expected: 'an integer in [0, 5]', actual: '6' });
    expectArgumentError(() => evaluator.atEntry({ kind: 'b', layer: 1 }, 0.5, 1e-3), { argument: 'index', actual: '0.5' });
    expectArgumentError(() => evaluator.atEntry({ kind: 'W', layer: 2 }, 0, 1e-3), { argument: 'ref', actual: '"W" of layer 2' });
    expectArgumentError(() => evaluator.atEntry({ kind: 'W', layer: 0 }, 0, NaN), { op: 'DoubleDoubleCost.atEntry', argument: 'step', actual: 'NaN' });
    expectArgumentError(() => evaluator.alongDirection({ kind: 'b', layer: 0 }, [1, 0, 0], Infinity), { op: 'DoubleDoubleCost.alongDirection', argument: 'step' });
    expectArgumentError(() => evaluator.alongDirection({ kind: 'gamma', layer: 0 }, [1, 2], 1e-3), { op: 'DoubleDoubleCost.alongDirection', argument: 'direction', expected: '3 values' });
    const withoutBn = new DoubleDoubleCost(plain, bn.x, bn.labels, 0);
    expectArgumentError(() => withoutBn.atEntry({ kind: 'gamma', layer: 0 }, 0, 1e-3), { argument: 'ref', actual: '"gamma" of layer 0' });
    // A kind that names no parameter (from untyped callers) is an error, not J left unperturbed.
    const bogus = { kind: 'mean', layer: 0 } as unknown as { kind: 'W'; layer: number };
    expectArgumentError(() => evaluator.atEntry(bogus, 0, 1e-3), { op: 'DoubleDoubleCost.atEntry', argument: 'ref', actual: '"mean" of layer 0' });
    expectArgumentError(() => evaluator.alongDirection(bogus, [1, 0, 0], 1e-3), { op: 'DoubleDoubleCost.alongDirection', argument: 'ref' });
  });
});
