import { Decimal } from 'decimal.js';
import { describe, expect, it } from 'vitest';
import { decimalCost, exactDecimal } from './decimal-oracle.js';
import { DoubleDoubleCost } from './double-double-model.js';
import { ddAdd, ddAddOuterProduct, ddExp, ddLog, ddToNumber, ddZeros, type DoubleDouble } from './double-double.js';
import { fromRows, type Matrix } from './matrix.js';
import { cost } from './model.js';
import { cloneNetwork, createNetwork, parameters, type Network } from './network.js';
import { createPrng, nextNormal } from './prng.js';

/*
Tests written against mutants that survived the StrykerJS double-double run (docs/mutation.md,
"@bnmlp/reference: the double-double run"). Each comment names the mutants it kills as
file:line:col of that run. Since then the table of 1/n! in double-double.ts is built on first use,
which moved the later lines of that file down: 143 is now 146, 170 is 176, 201 is 207, 296 is 302.

Most of these mutants change only the last bits of a double-double (about 2^-104 relative), below
any honest accuracy tolerance; those are pinned bit-exactly on chosen inputs. Every pinned value
is also checked against decimal.js to within 2^-100 relative, so the tests pin correct values.
*/
const EXACT = Decimal.clone({ precision: 400 });
const JUDGE = Decimal.clone({ precision: 80 });
type DecimalClass = typeof EXACT;
const PINNED_RELATIVE = 2 ** -100;

function toDecimal(D: DecimalClass, a: DoubleDouble): Decimal {
  return exactDecimal(D, a.hi).plus(exactDecimal(D, a.lo));
}

function relativeError(got: DoubleDouble, want: Decimal): number {
  return toDecimal(JUDGE, got).minus(want).abs().div(want.abs()).toNumber();
}

function expectPinned(got: DoubleDouble | null, pinned: DoubleDouble, exact: Decimal): void {
  expect(got).toEqual(pinned);
  expect(relativeError(pinned, exact)).toBeLessThanOrEqual(PINNED_RELATIVE);
}

describe('ddExp and ddLog (double-double.ts)', () => {
  // Must stay the first ddExp call in this file: the table of 1/n! is built on the first call, so
  // StrykerJS's per-test coverage credits the table's own mutants to that test alone.
  it('ddExp gives NaN for a NaN low part, after reading every term of its table (1/n! up to n = 12)', () => {
    // Kills double-double.ts:143:32 (`n < EXP_TERMS`: 1/12! missing). A NaN low part makes the
    // reduced argument NaN, so the series never meets its stopping test and reads all 12 terms.
    for (const a of [{ hi: 0, lo: NaN }, { hi: 0.5, lo: NaN }]) {
      const e = ddExp(a);
      expect(e.hi).toBeNaN();
      expect(e.lo).toBeNaN();
    }
  });

  it('ddExp: bit-exact values where the stopping point of the Taylor series shows in the last bit', () => {
    // Kills double-double.ts:170:9 (→ false: all 12 terms summed) and 170:32 (`1e-34 / |expm1|`:
    // the last term dropped). The first input was found by search among arguments whose series
    // stops at n = 9 with the next term at its largest (~3e-39 relative); the terms after the
    // stopping point change the last bit of the result there. e^0.05 is an ordinary argument
    // whose last kept term matters.
    const cases: Array<[DoubleDouble, DoubleDouble]> = [
      [{ hi: -0.1357373992493093, lo: -1.1325282249494102e-17 }, { hi: 0.8730718717171251, lo: 7.636470738509837e-19 }],
      [{ hi: 0.05, lo: 0 }, { hi: 1.0512710963760241, lo: -7.412102182532649e-17 }],
    ];
    for (const [a, pinned] of cases) expectPinned(ddExp(a), pinned, toDecimal(JUDGE, a).exp());
  });

  it('ddLog: bit-exact values, one where the stopping test of the series is an exact tie', () => {
    // Kills double-double.ts:201:9 (→ false: all 59 iterations; `<`: an exact tie no longer stops
    // the series) and 201:30 (`1e-34 / |sum|`: the last term dropped). For the first input (found
    // by search) the 7th term equals 1e-34·|sum| exactly, and the sum's low part is small enough
    // (8e-34, against ~1e-19 typically) that the 8th term (~2e-39 of the sum) changes it; the
    // result is 2·sum exactly (k = 0).
    const cases: Array<[DoubleDouble, DoubleDouble]> = [
      [{ hi: 1.0090872841125351, lo: 5.000502040963753e-17 }, { hi: 0.009046243192554416, lo: -1.6396406102353046e-33 }],
      [{ hi: 1.029, lo: 0 }, { hi: 0.028587456851912472, lo: 5.169398766325343e-22 }],
    ];
    for (const [a, pinned] of cases) expectPinned(ddLog(a), pinned, toDecimal(JUDGE, a).ln());
  });
});

describe('ddAdd and ddAddOuterProduct (double-double.ts)', () => {
  it('ddAdd is exact when the exact sum is a double-double, with every part in play: (1 + 2^-54) + (2^-53 + 2^-107)', () => {
    // Kills double-double.ts:82:27 (`u.lo - t.lo`). a.lo + b.lo = 2^-54 + 2^-107 rounds to 2^-54
    // with error t.lo = 2^-107; the sum 1 + 2^-53 + 2^-54 + 2^-107 is 1 + 2^-52 − (2^-54 − 2^-107),
    // whose low part is a float64, so it must come out exactly.
    const a = { hi: 1, lo: 2 ** -54 };
    const b = { hi: 2 ** -53, lo: 2 ** -107 };
    const sum = ddAdd(a, b);
    expect(sum).toEqual({ hi: 1 + 2 ** -52, lo: -(2 ** -54) + 2 ** -107 });
    expect(toDecimal(EXACT, sum).eq(toDecimal(EXACT, a).plus(toDecimal(EXACT, b)))).toBe(true);
  });

  it('ddAddOuterProduct leaves every entry normalized (hi = fl(hi + lo)), also when the low parts add up to more than half an ulp', () => {
    // Kills double-double.ts:296:19 (`s - lo`), which keeps the value but not the normalization.
    // m = 1 + 2^-54 plus d·w = 2^-53: the low parts sum to 1.5·2^-53, past half an ulp of 1.
    const m = ddZeros(1, 1);
    m.hi[0] = 1;
    m.lo[0] = 2 ** -54;
    ddAddOuterProduct(m, Float64Array.of(2 ** -53), Float64Array.of(0), [1]);
    expect([m.hi[0], m.lo[0]]).toEqual([1 + 2 ** -52, -(2 ** -54)]);
    // And on random double-double entries, rows and weights.
    const prng = createPrng(5);
    const rows = 8;
    const cols = 8;
    const matrix = ddZeros(rows, cols);
    const dHi = new Float64Array(rows);
    const dLo = new Float64Array(rows);
    for (let k = 0; k < rows * cols; k++) {
      matrix.hi[k] = nextNormal(prng);
      matrix.lo[k] = matrix.hi[k] * 2 ** -53 * nextNormal(prng) * 0.4;
    }
    for (let i = 0; i < rows; i++) {
      dHi[i] = nextNormal(prng);
      dLo[i] = dHi[i] * 2 ** -53 * nextNormal(prng) * 0.4;
    }
    const w = Array.from({ length: cols }, () => nextNormal(prng));
    ddAddOuterProduct(matrix, dHi, dLo, w);
    for (let k = 0; k < rows * cols; k++) expect(matrix.hi[k] + matrix.lo[k], `entry ${k}`).toBe(matrix.hi[k]);
  });
});

describe('DoubleDoubleCost (double-double-model.ts)', () => {
  const eye = (n: number): Matrix => fromRows(Array.from({ length: n }, (_, i) => Array.from({ length: n }, (__, j) => (i === j ? 1 : 0))));

  /** One linear layer with X = I, so the logits are exactly the rows of W. */
  function logitNetwork(rows: number[][]): { net: Network; x: Matrix } {
    const net = createNetwork({ inputDim: rows.length, hiddenDims: [], classes: rows[0].length, batchNorm: false });
    net.layers[0].W.data.set(rows.flat());
    return { net, x: eye(rows.length) };
  }

  /** 2 → 3 → 2 with short decimal weights, batch norm with γ and β optional. */
  function smallNetwork(batchNorm: boolean): { net: Network; x: Matrix; labels: number[] } {
    const net = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, batchNorm, bnAffine: batchNorm });
    net.layers[0].W.data.set([0.3, -0.7, 1.1, 0.9, 0.4, -0.6]);
    net.layers[0].b.set([0.1, 0.2, -0.3]);
    net.layers[1].W.data.set([1.2, -0.8, -0.5, 0.7, 0.6, 0.9]);
    net.layers[1].b.set([0.05, -0.15]);
    if (batchNorm) {
      net.layers[0].bn!.gamma!.set([1.5, 0.75, 1.25]);
      net.layers[0].bn!.beta!.set([0.25, -0.125, 0.375]);
    }
    return { net, x: fromRows([[0.5, -1.25], [1.5, 0.75], [-0.25, 1]]), labels: [0, 1, 1] };
  }

  it('alongDirection on β moves β alone: it equals a full pass and the decimal oracle at β + step·u', () => {
    // Kills double-double-model.ts:147:23 (→ true: γ moved along with β).
    const { net, x, labels } = smallNetwork(true);
    const beta = parameters(net).find((p) => p.kind === 'beta')!;
    const u = [0.5, -0.25, 1];
    const step = 2 ** -5;
    const got = new DoubleDoubleCost(net, x, labels, 0.1).alongDirection(beta, u, step);
    const moved = cloneNetwork(net);
    // β and step·u are short binary fractions, so β + step·u is exact in float64.
    moved.layers[0].bn!.beta!.set(Array.from(beta.values, (v, k) => v + step * u[k]));
    const full = new DoubleDoubleCost(moved, x, labels, 0.1).base;
    expect(got).not.toBeNull();
    expect(Math.abs(got!.hi - full.hi + (got!.lo - full.lo))).toBeLessThanOrEqual(1e-28 * full.hi);
    expect(relativeError(got!, decimalCost(moved, x, labels, 0.1, { precision: 50 }))).toBeLessThanOrEqual(PINNED_RELATIVE);
  });

  it('costOf shifts each row by its maximum: logits 800 apart give a finite J equal to the oracle and to float64', () => {
    // Kills the argmax pivot mutants double-double-model.ts:224:23 (→ false; `j >= k`), 224:39
    // (→ true; → false; `<= 0`), 224:62 (`i * k - j`; `i / k`) and 224:87 (`i * k - argmax`;
    // `i / k`): each picks another pivot in row 0 or row 1, where e^(800 − pivot) overflows and J is NaN.
    // Rows: maximum in the middle, first, last (the row-0 middle is what `i * k - argmax` misses).
    const { net, x } = logitNetwork([[0, 800, 0], [800, 0, 0], [0, 0, 800]]);
    const labels = [0, 1, 2];
    const j = new DoubleDoubleCost(net, x, labels, 0).base;
    expect(ddToNumber(j)).toBeCloseTo(cost(net, x, labels, 0).cost, 10);
    expect(relativeError(j, decimalCost(net, x, labels, 0, { precision: 50 }))).toBeLessThanOrEqual(PINNED_RELATIVE);
  });

  it('costOf pivots on the first of tied maximal logits: bit-exact J', () => {
    // Kills double-double-model.ts:224:39 (`>= 0`: the last of the tied maxima). The value is the
    // same for either pivot, but the sum of the other exponentials runs in another order
    // (e^-3.25 + e^-4 + 1 against 1 + e^-3.25 + e^-4), which here rounds differently.
    const { net, x } = logitNetwork([[1.5, -1.75, -2.5, 1.5]]);
    const j = new DoubleDoubleCost(net, x, [1], 0).base;
    expectPinned(j, { hi: 3.9712922882392827, lo: -1.0699350051800284e-16 }, decimalCost(net, x, [1], 0, { precision: 50 }));
  });

  it('atEntry updates the next layer by a rank-one term: bit-exact J', () => {
    // Kills double-double-model.ts:195:11 (→ false: the next layer's scores recomputed in full,
    // the same value rounded differently).
    const { net, x, labels } = smallNetwork(false);
    const b1 = parameters(net).find((p) => p.name === 'b1')!;
    const step = 2 ** -10;
    const got = new DoubleDoubleCost(net, x, labels, 0.1).atEntry(b1, 0, step);
    const moved = cloneNetwork(net);
    moved.layers[0].b[0] += step; // 0.1 + 2^-10 is exact: same binade, and 2^-10 is a multiple of its ulp
    expect(moved.layers[0].b[0] - net.layers[0].b[0]).toBe(step);
    expectPinned(got, { hi: 2.250516762857322, lo: 3.3003375602334993e-18 }, decimalCost(moved, x, labels, 0.1, { precision: 50 }));
  });

  it('batch norm takes the mean in two passes (mean, then the mean of the residuals): bit-exact J', () => {
    // Kills double-double-model.ts:269:21 (→ false; `i >= n`) and 272:21 (→ false; `i >= n`): each
    // leaves the one-pass mean Σs/n, which differs in its last bits. The BN column [10.1, 10.2,
    // 10.7] lies far from 0 next to its spread, so the mean's last bits reach J.
    const net = createNetwork({ inputDim: 3, hiddenDims: [2], classes: 2, batchNorm: true, bnAffine: true });
    net.layers[0].W.data.set([10.1, 1, 10.2, -1, 10.7, 0.5]);
    net.layers[0].bn!.beta!.set([0.5, 0.25]);
    net.layers[1].W.data.set([1, -1, 0.5, 2]);
    net.layers[1].b.set([0.1, -0.2]);
    const x = eye(3);
    const labels = [0, 1, 1];
    const j = new DoubleDoubleCost(net, x, labels, 0).base;
    expectPinned(j, { hi: 1.9222147481950889, lo: 8.009728057433315e-17 }, decimalCost(net, x, labels, 0, { precision: 50 }));
  });
});
