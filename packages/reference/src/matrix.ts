/** A dense row-major float64 matrix: entry (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

export function zeros(rows: number, cols: number): Matrix {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

export function fromRows(rowsOfValues: readonly (readonly number[])[]): Matrix {
  const rows = rowsOfValues.length;
  const cols = rows === 0 ? 0 : rowsOfValues[0].length;
  const m = zeros(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.data[i * cols + j] = rowsOfValues[i][j];
  return m;
}

export function cloneMatrix(m: Matrix): Matrix {
  return { rows: m.rows, cols: m.cols, data: Float64Array.from(m.data) };
}

/** C = A B. */
export function matMul(a: Matrix, b: Matrix): Matrix {
  const c = zeros(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k];
      for (let j = 0; j < b.cols; j++) c.data[i * c.cols + j] += aik * b.data[k * b.cols + j];
    }
  }
  return c;
}

/** C = Aᵀ B (no explicit transpose). */
export function matMulTransposeA(a: Matrix, b: Matrix): Matrix {
  const c = zeros(a.cols, b.cols);
  for (let k = 0; k < a.rows; k++) {
    for (let i = 0; i < a.cols; i++) {
      const aki = a.data[k * a.cols + i];
      for (let j = 0; j < b.cols; j++) c.data[i * c.cols + j] += aki * b.data[k * b.cols + j];
    }
  }
  return c;
}

/** C = A Bᵀ. */
export function matMulTransposeB(a: Matrix, b: Matrix): Matrix {
  const c = zeros(a.rows, b.rows);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.rows; j++) {
      let sum = 0;
      for (let k = 0; k < a.cols; k++) sum += a.data[i * a.cols + k] * b.data[j * b.cols + k];
      c.data[i * c.cols + j] = sum;
    }
  }
  return c;
}
