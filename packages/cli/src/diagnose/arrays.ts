/** A dense float64 array, row-major (C order) whatever the file stored. Shape [] is a scalar. */
export interface NdArray {
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

/** One named entry of a case or gradient file: numbers or text. */
export type FileValue = ({ readonly kind: 'array' } & NdArray) | { readonly kind: 'text'; readonly text: string };

/** A file's entries by name, in file order. */
export type NamedValues = Map<string, FileValue>;

export function array(shape: readonly number[], data: ArrayLike<number>): FileValue {
  return { kind: 'array', shape: [...shape], data: Float64Array.from(data) };
}

export function scalar(value: number): FileValue {
  return array([], [value]);
}

export function text(value: string): FileValue {
  return { kind: 'text', text: value };
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function formatShape(shape: readonly number[]): string {
  return shape.length === 0 ? 'a scalar' : shape.join('×');
}

/** Column-major (Fortran order) data of `shape` → row-major. */
export function columnMajorToRowMajor(shape: readonly number[], data: ArrayLike<number>): Float64Array {
  const out = new Float64Array(data.length);
  if (shape.length < 2) {
    out.set(Array.from(data));
    return out;
  }
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  // Walk the column-major order (first index fastest) and place each value at its row-major offset.
  for (let k = 0; k < data.length; k++) {
    let offset = 0;
    for (let d = 0; d < rank; d++) offset = offset * shape[d] + index[d];
    out[offset] = data[k];
    for (let d = 0; d < rank; d++) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/** Row-major data of `shape` → column-major. */
export function rowMajorToColumnMajor(shape: readonly number[], data: ArrayLike<number>): Float64Array {
  if (shape.length < 2) return Float64Array.from(data);
  // Transposing the axis order turns one into the other.
  const reversed = [...shape].reverse();
  return columnMajorToRowMajor(reversed, data);
}

/** The transpose of a row-major rows × cols matrix. */
export function transpose(rows: number, cols: number, data: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  return out;
}
