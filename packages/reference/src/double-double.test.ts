import { Decimal } from 'decimal.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exactDecimal } from './decimal-oracle.js';
import {
  DD_EPSILON, DD_LN2, DD_ONE, ddAdd, ddAddNumber, ddAddOuterProduct, ddCompare, ddDiv, ddDivNumber, ddExp, ddFromNumber, ddLog, ddMatMulNumbers, ddMul,
  ddMulNumber, ddNeg, ddSqrt, ddSub, ddToNumber, ddZeros, fastTwoSum, twoProduct, twoSum, type DdMatrix, type DoubleDouble,
} from './double-double.js';

/*
Everything is judged against decimal.js. EXACT has enough digits to hold any sum or product of two
of the generated float64s exactly (binary exponents within ±160 need ≤ 400 digits), so the
error-free transformations are checked for equality. JUDGE computes the reference results to 80
digits (≥ 40): the inputs must enter (nearly) exactly, because a double-double such as 1 + 2^-100
spans ~100 digits, and rounding it to 40 would move ln(1 + 2^-100) by 1e-10 relative.
*/
const EXACT = Decimal.clone({ precision: 400 });
const JUDGE = Decimal.clone({ precision: 80 });
type DecimalClass = typeof EXACT;

function toDecimal(D: DecimalClass, a: DoubleDouble): Decimal {
  return exactDecimal(D, a.hi).plus(exactDecimal(D, a.lo));
}

function relativeError(got: DoubleDouble, want: Decimal): number {
  const diff = toDecimal(JUDGE, got).minus(want).abs();
  return (want.isZero() ? diff : diff.div(want.abs())).toNumber();
}

/** ±m·2^e with m uniform in [1, 2): every mantissa bit random, exponents in range. */
const doubleArb = (minExponent: number, maxExponent: number) =>
  fc
    .tuple(fc.double({ min: 1, max: 2, maxExcluded: true, noNaN: true }), fc.integer({ min: minExponent, max: maxExponent }), fc.boolean())
    .map(([m, e, negative]) => (negative ? -m : m) * 2 ** e);

/** A normalized double-double whose low part fills the bits below the high part's. */
const ddArb = (minExponent: number, maxExponent: number) =>
  fc.tuple(doubleArb(minExponent, maxExponent), fc.double({ min: -1, max: 1, noNaN: true })).map(([hi, t]) => fastTwoSum(hi, hi * t * 2 ** -53));

const positive = (a: DoubleDouble) => (a.hi < 0 ? ddNeg(a) : a);

/** Four units of 2^-104: the measured worst of the basic operations is 1.2 units. */
const BASIC = 4 * DD_EPSILON;

describe('error-free transformations', () => {
  it('twoSum: s + e equals a + b exactly, s = fl(a + b), and e is below half an ulp of s', () => {
    fc.assert(
      fc.property(doubleArb(-160, 160), doubleArb(-160, 160), (a, b) => {
        const { hi, lo } = twoSum(a, b);
        expect(hi).toBe(a + b);
        expect(hi + lo).toBe(hi);
        expect(exactDecimal(EXACT, hi).plus(exactDecimal(EXACT, lo)).eq(exactDecimal(EXACT, a).plus(exactDecimal(EXACT, b)))).toBe(true);
      }),
    );
  });

  it('fastTwoSum: the same when |a| ≥ |b|', () => {
    fc.assert(
      fc.property(doubleArb(-160, 160), doubleArb(-160, 160), (x, y) => {
        const [a, b] = Math.abs(x) >= Math.abs(y) ? [x, y] : [y, x];
        const { hi, lo } = fastTwoSum(a, b);
        expect(hi).toBe(a + b);
        expect(exactDecimal(EXACT, hi).plus(exactDecimal(EXACT, lo)).eq(exactDecimal(EXACT, a).plus(exactDecimal(EXACT, b)))).toBe(true);
      }),
    );
  });

  it('twoProduct: p + e equals a · b exactly, p = fl(a · b)', () => {
    fc.assert(
      fc.property(doubleArb(-160, 160), doubleArb(-160, 160), (a, b) => {
        const { hi, lo } = twoProduct(a, b);
        expect(hi).toBe(a * b);
        expect(hi + lo).toBe(hi);
        expect(exactDecimal(EXACT, hi).plus(exactDecimal(EXACT, lo)).eq(exactDecimal(EXACT, a).times(exactDecimal(EXACT, b)))).toBe(true);
      }),
    );
    // Where float64 alone loses the low half of the product: (1 + 2^-30)² = 1 + 2^-29 + 2^-60.
    const square = twoProduct(1 + 2 ** -30, 1 + 2 ** -30);
    expect([square.hi, square.lo]).toEqual([1 + 2 ** -29, 2 ** -60]);
  });
});

describe('double-double arithmetic against 80-digit decimals', () => {
  const binary: Array<[string, (a: DoubleDouble, b: DoubleDouble) => DoubleDouble, (a: Decimal, b: Decimal) => Decimal]> = [
    ['ddAdd', ddAdd, (a, b) => a.plus(b)],
    ['ddSub', ddSub, (a, b) => a.minus(b)],
    ['ddMul', ddMul, (a, b) => a.times(b)],
    ['ddDiv', ddDiv, (a, b) => a.div(b)],
    ['ddAddNumber', (a, b) => ddAddNumber(a, b.hi), (a, b) => a.plus(b)],
    ['ddMulNumber', (a, b) => ddMulNumber(a, b.hi), (a, b) => a.times(b)],
    ['ddDivNumber', (a, b) => ddDivNumber(a, b.hi), (a, b) => a.div(b)],
  ];
  it.each(binary)('%s is within 4·2^-104 relative', (name, op, exact) => {
    const numberOperand = name.endsWith('Number');
    fc.assert(
      fc.property(ddArb(-40, 40), ddArb(-40, 40), (a, b0) => {
        const b = numberOperand ? ddFromNumber(b0.hi) : b0;
        const error = relativeError(op(a, b), exact(toDecimal(JUDGE, a), toDecimal(JUDGE, b)));
        if (!(error <= BASIC)) expect.fail(`${name}(${a.hi} + ${a.lo}, ${b.hi} + ${b.lo}): relative error ${error}`);
      }),
    );
  });

  it('ddAdd keeps its relative accuracy under cancellation (a + (−a + small))', () => {
    fc.assert(
      fc.property(ddArb(-20, 20), ddArb(-80, -30), (a, small) => {
        const b = ddAdd(ddNeg(a), small);
        const error = relativeError(ddAdd(a, b), toDecimal(JUDGE, a).plus(toDecimal(JUDGE, b)));
        if (!(error <= BASIC)) expect.fail(`relative error ${error}`);
      }),
    );
  });

  it('ddSqrt is within 4·2^-104 relative; exact on perfect squares; 0 and NaN at the edges', () => {
    fc.assert(
      fc.property(ddArb(-300, 300), (a0) => {
        const a = positive(a0);
        const error = relativeError(ddSqrt(a), toDecimal(JUDGE, a).sqrt());
        if (!(error <= BASIC)) expect.fail(`sqrt(${a.hi} + ${a.lo}): relative error ${error}`);
      }),
    );
    expect(ddSqrt(ddFromNumber(4))).toEqual({ hi: 2, lo: 0 });
    expect(ddSqrt(twoProduct(1 + 2 ** -30, 1 + 2 ** -30))).toEqual({ hi: 1 + 2 ** -30, lo: 0 });
    expect(ddSqrt(ddFromNumber(0))).toEqual({ hi: 0, lo: 0 });
    expect(ddSqrt(ddFromNumber(-1)).hi).toBeNaN();
  });

  it('ddExp is within 1e-30 relative for |a| ≤ 80 and 1e-29 up to 650 (the reduction by k·ln 2 grows with |a|)', () => {
    for (const [limit, bound] of [[80, 1e-30], [650, 1e-29]] as const)
      fc.assert(
        fc.property(ddArb(-1, -1), fc.double({ min: -1, max: 1, noNaN: true }), (unit, t) => {
          // unit ∈ ±[0.5, 1): the argument covers (−limit, limit) with every bit of a double-double.
          const a = ddMulNumber(unit, limit * t);
          const error = relativeError(ddExp(a), toDecimal(JUDGE, a).exp());
          if (!(error <= bound)) expect.fail(`exp(${a.hi} + ${a.lo}): relative error ${error}`);
        }),
      );
    fc.assert(
      fc.property(ddArb(-200, -5), (a) => {
        const error = relativeError(ddExp(a), toDecimal(JUDGE, a).exp());
        if (!(error <= BASIC)) expect.fail(`exp(${a.hi} + ${a.lo}): relative error ${error}`);
      }),
    );
    expect(ddExp(ddFromNumber(0))).toEqual(DD_ONE);
    expect(ddExp(ddFromNumber(710)).hi).toBe(Infinity);
    expect(ddExp(ddFromNumber(-746))).toEqual({ hi: 0, lo: 0 });
    expect(ddExp(ddFromNumber(NaN)).hi).toBeNaN();
  });

  it('ddLog is within 1e-30 relative everywhere, near 1 included (where ln is tiny); edge values', () => {
    fc.assert(
      fc.property(ddArb(-900, 900), (a0) => {
        const a = positive(a0);
        if (a.hi === 1 && a.lo === 0) return;
        const error = relativeError(ddLog(a), toDecimal(JUDGE, a).ln());
        if (!(error <= 1e-30)) expect.fail(`ln(${a.hi} + ${a.lo}): relative error ${error}`);
      }),
    );
    fc.assert(
      fc.property(ddArb(-100, -1), (offset) => {
        const a = ddAddNumber(offset, 1);
        const error = relativeError(ddLog(a), toDecimal(JUDGE, a).ln());
        if (!(error <= 1e-30)) expect.fail(`ln(1 + ${offset.hi} + ${offset.lo}): relative error ${error}`);
      }),
    );
    expect(ddLog(DD_ONE)).toEqual({ hi: 0, lo: 0 });
    expect(ddLog(ddFromNumber(0)).hi).toBe(-Infinity);
    expect(ddLog(ddFromNumber(-1)).hi).toBeNaN();
    expect(ddLog(ddFromNumber(Infinity)).hi).toBe(Infinity);
  });

  it('DD_LN2 is ln 2 to within half a unit of 2^-106', () => {
    const error = toDecimal(JUDGE, DD_LN2).minus(new JUDGE(2).ln()).abs().toNumber();
    expect(error).toBeLessThanOrEqual(2 ** -107);
  });

  it('ddCompare orders double-doubles as their exact values', () => {
    fc.assert(
      fc.property(ddArb(-10, 10), ddArb(-60, -40), (a, small) => {
        const b = ddAdd(a, small);
        const sign = toDecimal(EXACT, a).comparedTo(toDecimal(EXACT, b));
        expect(ddCompare(a, b)).toBe(sign);
        expect(ddCompare(b, a)).toBe(sign === 0 ? 0 : -sign);
        expect(ddCompare(a, a)).toBe(0);
      }),
    );
  });

  it('ddToNumber rounds to the nearest float64', () => {
    expect(ddToNumber(twoSum(1, 2 ** -60))).toBe(1);
    expect(ddToNumber(fastTwoSum(1, 2 ** -52))).toBe(1 + 2 ** -52);
  });
});

describe('array kernels', () => {
  function exactProduct(a: DdMatrix, w: Float64Array, cols: number, bias: Float64Array | null, i: number, j: number) {
    let sum = exactDecimal(EXACT, bias ? bias[j] : 0);
    let magnitude = sum.abs();
    for (let k = 0; k < a.cols; k++) {
      const term = toDecimal(EXACT, { hi: a.hi[i * a.cols + k], lo: a.lo[i * a.cols + k] }).times(exactDecimal(EXACT, w[k * cols + j]));
      sum = sum.plus(term);
      magnitude = magnitude.plus(term.abs());
    }
    return { sum, magnitude };
  }

  const matrixArb = fc.record({ rows: fc.integer({ min: 1, max: 4 }), inner: fc.integer({ min: 1, max: 6 }), cols: fc.integer({ min: 1, max: 4 }) }).chain(({ rows, inner, cols }) =>
    fc.record({
      a: fc.array(ddArb(-8, 8), { minLength: rows * inner, maxLength: rows * inner }),
      w: fc.array(doubleArb(-8, 8), { minLength: inner * cols, maxLength: inner * cols }),
      bias: fc.option(fc.array(doubleArb(-8, 8), { minLength: cols, maxLength: cols })),
      rows: fc.constant(rows),
      inner: fc.constant(inner),
      cols: fc.constant(cols),
    }),
  );

  it('ddMatMulNumbers: every entry within (inner + 2)·2^-104 of the sum of |terms| from the exact bias + Σ a·w', () => {
    fc.assert(
      fc.property(matrixArb, ({ a, w, bias, rows, inner, cols }) => {
        const m: DdMatrix = { rows, cols: inner, hi: Float64Array.from(a, (v) => v.hi), lo: Float64Array.from(a, (v) => v.lo) };
        const weights = Float64Array.from(w);
        const b = bias ? Float64Array.from(bias) : null;
        const out = ddMatMulNumbers(m, weights, cols, b);
        expect([out.rows, out.cols]).toEqual([rows, cols]);
        for (let i = 0; i < rows; i++)
          for (let j = 0; j < cols; j++) {
            const { sum, magnitude } = exactProduct(m, weights, cols, b, i, j);
            const got = toDecimal(EXACT, { hi: out.hi[i * cols + j], lo: out.lo[i * cols + j] });
            expect(out.hi[i * cols + j] + out.lo[i * cols + j]).toBe(out.hi[i * cols + j]);
            const bound = magnitude.times((inner + 2) * DD_EPSILON);
            if (got.minus(sum).abs().gt(bound)) expect.fail(`entry (${i}, ${j}): ${got} vs ${sum}`);
          }
      }),
    );
  });

  it('ddMatMulNumbers keeps what float64 cancels: 1e16 + 1 − 1e16 = 1', () => {
    const a: DdMatrix = { rows: 1, cols: 3, hi: Float64Array.from([1e16, 1, -1e16]), lo: new Float64Array(3) };
    const out = ddMatMulNumbers(a, Float64Array.from([1, 1, 1]), 1, null);
    expect([out.hi[0], out.lo[0]]).toEqual([1, 0]);
    expect(1e16 + 1 - 1e16).not.toBe(1);
  });

  it('ddAddOuterProduct: m[i, j] += d[i]·w[j] within 3·2^-104 of |m| + |d·w|; zero rows left untouched', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }).chain((rows) =>
          fc.integer({ min: 1, max: 4 }).chain((cols) =>
            fc.record({
              m: fc.array(ddArb(-8, 8), { minLength: rows * cols, maxLength: rows * cols }),
              d: fc.array(fc.oneof(ddArb(-8, 8), fc.constant({ hi: 0, lo: 0 })), { minLength: rows, maxLength: rows }),
              w: fc.array(doubleArb(-8, 8), { minLength: cols, maxLength: cols }),
              rows: fc.constant(rows),
              cols: fc.constant(cols),
            }),
          ),
        ),
        ({ m, d, w, rows, cols }) => {
          const matrix = ddZeros(rows, cols);
          m.forEach((v, k) => {
            matrix.hi[k] = v.hi;
            matrix.lo[k] = v.lo;
          });
          ddAddOuterProduct(matrix, Float64Array.from(d, (v) => v.hi), Float64Array.from(d, (v) => v.lo), w);
          for (let i = 0; i < rows; i++)
            for (let j = 0; j < cols; j++) {
              const k = i * cols + j;
              const before = toDecimal(EXACT, m[k]);
              const product = toDecimal(EXACT, d[i]).times(exactDecimal(EXACT, w[j]));
              const got = toDecimal(EXACT, { hi: matrix.hi[k], lo: matrix.lo[k] });
              if (d[i].hi === 0) expect([matrix.hi[k], matrix.lo[k]]).toEqual([m[k].hi, m[k].lo]);
              const bound = before.abs().plus(product.abs()).times(3 * DD_EPSILON);
              if (got.minus(before.plus(product)).abs().gt(bound)) expect.fail(`entry (${i}, ${j})`);
            }
        },
      ),
    );
  });
});
