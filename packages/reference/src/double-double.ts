/**
 * Double-double arithmetic: a real number held as the unevaluated sum hi + lo of two float64s,
 * normalized so that hi = fl(hi + lo). That is 106 significant bits, about 32 decimal digits, at
 * roughly ten times the cost of float64; the stencil-4 gradient check evaluates J with it
 * (double-double-model.ts) so that rounding of J, divided by the step, no longer limits the
 * centered difference.
 *
 * Built on two error-free transformations (Dekker 1971, Knuth TAOCP vol. 2):
 *   twoSum(a, b)     = s + e with s = fl(a + b), exactly
 *   twoProduct(a, b) = p + e with p = fl(a · b), exactly (Dekker's split: JavaScript has no fma)
 * The arithmetic operations and sqrt return results within a few units of 2^-104 (DD_EPSILON)
 * relative of the exact result of their double-double operands (measured ≤ 1.2 units; the tests
 * require 4). exp and log reduce their argument and sum a Taylor series: within 1e-30 relative for
 * |a| ≤ 80 (exp; the reduction by k·ln 2 adds ~|a|·2^-106, so 1e-29 up to 650) and everywhere
 * (log). Valid away from overflow and underflow: |values| < 2^996 (the split multiplies by
 * 2^27 + 1) and above ~1e-290, where the low part would turn subnormal and lose digits; the
 * gradient check never approaches either.
 *
 * Values are plain immutable objects; the hot loops of the forward pass use the array kernels at
 * the end of the file, the same arithmetic written out inline so that no object is allocated per
 * operation (about five times faster in V8).
 */
export interface DoubleDouble {
  readonly hi: number;
  readonly lo: number;
}

/** Relative precision of the operations: 2^-104 ≈ 4.9e-32. */
export const DD_EPSILON = 2 ** -104;

/** Dekker's splitter 2^27 + 1: splits a float64 into two 26-bit halves whose products are exact. */
const SPLITTER = 134217729;

export const DD_ZERO: DoubleDouble = { hi: 0, lo: 0 };
export const DD_ONE: DoubleDouble = { hi: 1, lo: 0 };
/** ln 2 rounded to double-double (checked against 40 digits in the tests). */
export const DD_LN2: DoubleDouble = { hi: 6.931471805599452862e-1, lo: 2.319046813846299558e-17 };

export function ddFromNumber(value: number): DoubleDouble {
  return { hi: value, lo: 0 };
}

/** The nearest float64. */
export function ddToNumber(a: DoubleDouble): number {
  return a.hi + a.lo;
}

/** s + e = a + b exactly, with s = fl(a + b). */
export function twoSum(a: number, b: number): DoubleDouble {
  const s = a + b;
  const bb = s - a;
  return { hi: s, lo: a - (s - bb) + (b - bb) };
}

/** twoSum when |a| ≥ |b| (or a = 0): three operations instead of six. */
export function fastTwoSum(a: number, b: number): DoubleDouble {
  const s = a + b;
  return { hi: s, lo: b - (s - a) };
}

/** p + e = a · b exactly, with p = fl(a · b). */
export function twoProduct(a: number, b: number): DoubleDouble {
  const p = a * b;
  let t = SPLITTER * a;
  const aHi = t - (t - a);
  const aLo = a - aHi;
  t = SPLITTER * b;
  const bHi = t - (t - b);
  const bLo = b - bHi;
  return { hi: p, lo: aHi * bHi - p + aHi * bLo + aLo * bHi + aLo * bLo };
}

export function ddNeg(a: DoubleDouble): DoubleDouble {
  return { hi: -a.hi, lo: -a.lo };
}

/** The accurate ("IEEE-style") sum: relative error O(2^-104) even under cancellation. */
export function ddAdd(a: DoubleDouble, b: DoubleDouble): DoubleDouble {
  const s = twoSum(a.hi, b.hi);
  const t = twoSum(a.lo, b.lo);
  const u = fastTwoSum(s.hi, s.lo + t.hi);
  return fastTwoSum(u.hi, u.lo + t.lo);
}

export function ddSub(a: DoubleDouble, b: DoubleDouble): DoubleDouble {
  return ddAdd(a, ddNeg(b));
}

export function ddAddNumber(a: DoubleDouble, b: number): DoubleDouble {
  const s = twoSum(a.hi, b);
  return fastTwoSum(s.hi, s.lo + a.lo);
}

export function ddMul(a: DoubleDouble, b: DoubleDouble): DoubleDouble {
  const p = twoProduct(a.hi, b.hi);
  return fastTwoSum(p.hi, p.lo + (a.hi * b.lo + a.lo * b.hi));
}

export function ddMulNumber(a: DoubleDouble, b: number): DoubleDouble {
  const p = twoProduct(a.hi, b);
  return fastTwoSum(p.hi, p.lo + a.lo * b);
}

/** a · 2^k, exact (scaling by a power of two only changes exponents). */
function ddMulPowerOfTwo(a: DoubleDouble, k: number): DoubleDouble {
  const scale = 2 ** k;
  return { hi: a.hi * scale, lo: a.lo * scale };
}

/** Long division: two float64 quotient digits, the second from the remainder a − q1·b in double-double. */
export function ddDiv(a: DoubleDouble, b: DoubleDouble): DoubleDouble {
  const q1 = a.hi / b.hi;
  const r = ddSub(a, ddMulNumber(b, q1));
  return fastTwoSum(q1, r.hi / b.hi);
}

export function ddDivNumber(a: DoubleDouble, b: number): DoubleDouble {
  const q1 = a.hi / b;
  const p = twoProduct(q1, b);
  const r = twoSum(a.hi, -p.hi);
  const q2 = (r.hi + (r.lo - p.lo + a.lo)) / b;
  return fastTwoSum(q1, q2);
}

/** One Newton step from the float64 root y: y + (a − y²)/(2y), with a − y² exact in double-double. */
export function ddSqrt(a: DoubleDouble): DoubleDouble {
  if (a.hi === 0) return DD_ZERO;
  if (!(a.hi > 0)) return { hi: NaN, lo: NaN };
  const y = Math.sqrt(a.hi);
  const residual = ddSub(a, twoProduct(y, y));
  return fastTwoSum(y, residual.hi / (2 * y));
}

export function ddCompare(a: DoubleDouble, b: DoubleDouble): -1 | 0 | 1 {
  if (a.hi !== b.hi) return a.hi < b.hi ? -1 : 1;
  if (a.lo !== b.lo) return a.lo < b.lo ? -1 : 1;
  return 0;
}

/** 1/n! for n = 0..EXP_TERMS, each rounded to double-double (n! is exact in float64 up to 22!). */
const EXP_TERMS = 12;
// Built on first use, not at load: a broken helper then fails the tests that use ddExp, not the import (mutation testing).
let inverseFactorials: DoubleDouble[] | undefined;
function inverseFactorialTable(): DoubleDouble[] {
  const table: DoubleDouble[] = [DD_ONE];
  for (let n = 1, factorial = 1; n <= EXP_TERMS; n++) {
    factorial *= n;
    table.push(ddDiv(DD_ONE, ddFromNumber(factorial)));
  }
  return table;
}

/** Halvings of the reduced argument before the series (undone by squaring): 2^-9. */
const EXP_HALVINGS = 9;
const EXP_SCALE = 2 ** -EXP_HALVINGS;

/**
 * e^a: a = k·ln 2 + r with |r| ≤ ln 2 / 2, then expm1(r / 2^9) by its Taylor series (|x| ≤ 6.8e-4:
 * the terms fall below 1e-34 of the sum by the 10th), then expm1 doubled back nine times by
 * expm1(2x) = expm1(x)·(2 + expm1(x)), which keeps the relative accuracy, then (1 + expm1(r))·2^k.
 */
export function ddExp(a: DoubleDouble): DoubleDouble {
  if (Number.isNaN(a.hi)) return { hi: NaN, lo: NaN };
  if (a.hi > 709.78) return { hi: Infinity, lo: 0 };
  if (a.hi < -745.1) return DD_ZERO;
  const k = Math.round(a.hi / DD_LN2.hi);
  const reduced = ddSub(a, ddMulNumber(DD_LN2, k));
  const r = { hi: reduced.hi * EXP_SCALE, lo: reduced.lo * EXP_SCALE };
  const inverse = (inverseFactorials ??= inverseFactorialTable());
  let term = r;
  let expm1 = r;
  for (let n = 2; n <= EXP_TERMS; n++) {
    term = ddMul(term, r);
    const scaled = ddMul(term, inverse[n]);
    expm1 = ddAdd(expm1, scaled);
    if (Math.abs(scaled.hi) <= 1e-34 * Math.abs(expm1.hi)) break;
  }
  for (let i = 0; i < EXP_HALVINGS; i++) expm1 = ddMul(expm1, ddAddNumber(expm1, 2));
  const result = ddAddNumber(expm1, 1);
  if (k === 0) return result;
  // k may reach ±1075: scale in two steps so that 2^k itself never overflows.
  const half = Math.trunc(k / 2);
  return ddMulPowerOfTwo(ddMulPowerOfTwo(result, half), k - half);
}

/**
 * ln a: a = m·2^k with m in about [1/√2, √2], then ln m = 2·atanh(u), u = (m − 1)/(m + 1),
 * |u| ≤ 0.172, by its Taylor series 2(u + u³/3 + u⁵/5 + …) summed until the term is below 1e-34
 * of the sum. Near a = 1, k = 0 and u is small, so the result keeps its relative accuracy there too.
 */
export function ddLog(a: DoubleDouble): DoubleDouble {
  if (a.hi === 0) return { hi: -Infinity, lo: 0 };
  if (!(a.hi > 0)) return { hi: NaN, lo: NaN };
  if (a.hi === Infinity) return { hi: Infinity, lo: 0 };
  const k = Math.round(Math.log2(a.hi));
  // 2^-k in two steps: for subnormal-range a (k < −1022) 2^-k alone would overflow.
  const half = Math.trunc(k / 2);
  const m = ddMulPowerOfTwo(ddMulPowerOfTwo(a, -half), half - k);
  const u = ddDiv(ddAddNumber(m, -1), ddAddNumber(m, 1));
  const u2 = ddMul(u, u);
  let power = u;
  let sum = u;
  for (let n = 1; n < 60; n++) {
    power = ddMul(power, u2);
    const term = ddDivNumber(power, 2 * n + 1);
    sum = ddAdd(sum, term);
    if (Math.abs(term.hi) <= 1e-34 * Math.abs(sum.hi)) break;
  }
  return ddAdd(ddMulNumber(DD_LN2, k), ddMulPowerOfTwo(sum, 1));
}

/* ------------------------------------------------------------------------------------------------
 * Array kernels. A double-double vector or matrix is two Float64Arrays (hi and lo) of equal length.
 * Sums accumulate hi exactly (twoSum) and the low-order parts in float64, the usual "sloppy"
 * double-double sum: its error is at most about (terms + 2)·2^-104 of the sum of |terms|, not of
 * the sum itself, which is all a forward pass needs (its later rounding is of that size anyway).
 * --------------------------------------------------------------------------------------------- */

/** A row-major double-double matrix: entry (i, j) is hi[i·cols + j] + lo[i·cols + j]. */
export interface DdMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly hi: Float64Array;
  readonly lo: Float64Array;
}

export function ddZeros(rows: number, cols: number): DdMatrix {
  return { rows, cols, hi: new Float64Array(rows * cols), lo: new Float64Array(rows * cols) };
}

export function ddCloneMatrix(m: DdMatrix): DdMatrix {
  return { rows: m.rows, cols: m.cols, hi: Float64Array.from(m.hi), lo: Float64Array.from(m.lo) };
}

/** Entry k of a double-double array pair. */
export function ddAt(m: DdMatrix, k: number): DoubleDouble {
  return { hi: m.hi[k], lo: m.lo[k] };
}

export function ddSet(m: DdMatrix, k: number, value: DoubleDouble): void {
  m.hi[k] = value.hi;
  m.lo[k] = value.lo;
}

/**
 * out[i, j] = bias[j] + Σₖ a[i, k] · w[k, j] for a double-double a (rows × inner) and float64 w
 * (inner × cols, row-major) and bias (cols, or null for 0).
 */
export function ddMatMulNumbers(a: DdMatrix, w: Float64Array, cols: number, bias: Float64Array | null): DdMatrix {
  const { rows, cols: inner } = a;
  const out = ddZeros(rows, cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let sumHi = bias ? bias[j] : 0;
      let sumLo = 0;
      for (let k = 0; k < inner; k++) {
        const x = a.hi[i * inner + k];
        const y = w[k * cols + j];
        // twoProduct(x, y), written out.
        const p = x * y;
        let t = SPLITTER * x;
        const xHi = t - (t - x);
        const xLo = x - xHi;
        t = SPLITTER * y;
        const yHi = t - (t - y);
        const yLo = y - yHi;
        const productError = xHi * yHi - p + xHi * yLo + xLo * yHi + xLo * yLo + a.lo[i * inner + k] * y;
        // twoSum(sumHi, p), written out.
        const s = sumHi + p;
        const bb = s - sumHi;
        sumLo += sumHi - (s - bb) + (p - bb) + productError;
        sumHi = s;
      }
      const s = sumHi + sumLo;
      out.hi[i * cols + j] = s;
      out.lo[i * cols + j] = sumLo - (s - sumHi);
    }
  return out;
}

/** m[i, j] += d[i] · w[j] in place, for a double-double column d (m.rows) and float64 row w (m.cols). */
export function ddAddOuterProduct(m: DdMatrix, dHi: Float64Array, dLo: Float64Array, w: ArrayLike<number>): void {
  const { rows, cols } = m;
  for (let i = 0; i < rows; i++) {
    const x = dHi[i];
    if (x === 0 && dLo[i] === 0) continue;
    let t = SPLITTER * x;
    const xHi = t - (t - x);
    const xLo = x - xHi;
    for (let j = 0; j < cols; j++) {
      const y = w[j];
      const p = x * y;
      t = SPLITTER * y;
      const yHi = t - (t - y);
      const yLo = y - yHi;
      const productError = xHi * yHi - p + xHi * yLo + xLo * yHi + xLo * yLo + dLo[i] * y;
      const k = i * cols + j;
      const a = m.hi[k];
      const s = a + p;
      const bb = s - a;
      const lo = a - (s - bb) + (p - bb) + productError + m.lo[k];
      const sum = s + lo;
      m.hi[k] = sum;
      m.lo[k] = lo - (sum - s);
    }
  }
}
