import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cloneMatrix, fromRows, matMul, matMulTransposeA, matMulTransposeB, zeros, type Matrix } from './matrix.js';
import { integerMatrixArb, productDimsArb } from './test-support/arbitraries.js';

/** Textbook triple loop on explicit (row, col) accessors: the independent definition. */
function naiveProduct(a: Matrix, b: Matrix, transposeA: boolean, transposeB: boolean): Matrix {
  const at = (m: Matrix, i: number, j: number, t: boolean) => (t ? m.data[j * m.cols + i] : m.data[i * m.cols + j]);
  const n = transposeA ? a.cols : a.rows;
  const k = transposeA ? a.rows : a.cols;
  const m = transposeB ? b.rows : b.cols;
  const c = zeros(n, m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += at(a, i, p, transposeA) * at(b, p, j, transposeB);
      c.data[i * m + j] = sum;
    }
  return c;
}

describe('matrix', () => {
  it('fromRows lays rows out row-major', () => {
    const m = fromRows([
      [1, 2, 3],
      [4, 5, 6],
    ]);

    expect(m.rows).toBe(2);
    expect(m.cols).toBe(3);
    expect(Array.from(m.data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('matMul of a hand example', () => {
    const a = fromRows([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const b = fromRows([
      [7, 8, 9],
      [10, 11, 12],
    ]);

    const c = matMul(a, b);

    expect(c).toEqual(fromRows([
      [27, 30, 33],
      [61, 68, 75],
      [95, 106, 117],
    ]));
  });

  it('matMul, matMulTransposeA and matMulTransposeB equal the naive product (integer entries: exact)', () => {
    const operands = productDimsArb.chain(({ n, k, m }) =>
      fc.record({ a: integerMatrixArb(n, k), b: integerMatrixArb(k, m), aT: integerMatrixArb(k, n), bT: integerMatrixArb(m, k) }),
    );
    fc.assert(
      fc.property(operands, ({ a, b, aT, bT }) => {
        expect(matMul(a, b)).toEqual(naiveProduct(a, b, false, false));
        expect(matMulTransposeA(aT, b)).toEqual(naiveProduct(aT, b, true, false));
        expect(matMulTransposeB(a, bT)).toEqual(naiveProduct(a, bT, false, true));
      }),
    );
  });

  it('products do not modify their operands', () => {
    const a = fromRows([[1, -2], [3, 4]]);
    const b = fromRows([[5, 6], [-7, 8]]);
    const before = [cloneMatrix(a), cloneMatrix(b)];

    matMul(a, b);
    matMulTransposeA(a, b);
    matMulTransposeB(a, b);

    expect([a, b]).toEqual(before);
  });

  it('cloneMatrix copies the data (no shared buffer)', () => {
    const a = fromRows([[1, 2]]);

    const copy = cloneMatrix(a);
    copy.data[0] = 99;

    expect(a.data[0]).toBe(1);
  });
});
