/*
The work on a data set that the calling thread and a data helper thread (data-threads.ts) share,
one block at a time. Every value is computed by the same operations in the same order whichever
thread takes its block and however the work is split, so the results have the same bits as one
thread doing it all:
- statistics are split by features: a feature's sums run over the rows in order, on one thread;
- standardised values are split by rows: each is computed on its own.
This module imports nothing, so the helper thread loads nothing else.
*/

/** Bytes per record's pixels (CIFAR_PIXELS; repeated here so the helper thread imports nothing). */
export const PIXEL_ROW_BYTES = 3072;

/**
 * Features [j0, j1) of the first `count` records: mean[j] = Σ pixels / count / 255 (the exact
 * integer sum), std[j] = sqrt(Σ (pixel / 255 − mean[j])² / count), both sums in row order.
 */
export function featureStatsBlock(pixels: Uint8Array, count: number, j0: number, j1: number, mean: Float64Array, std: Float64Array): void {
  const width = j1 - j0;
  const sum = new Float64Array(width);
  for (let i = 0; i < count; i++) {
    const row = i * PIXEL_ROW_BYTES + j0;
    for (let j = 0; j < width; j++) sum[j] += pixels[row + j];
  }
  // sum/count is exactly the pixel value for a constant feature, so its deviations are exactly 0.
  const blockMean = sum.map((s) => s / count / 255);
  const squares = new Float64Array(width);
  for (let i = 0; i < count; i++) {
    const row = i * PIXEL_ROW_BYTES + j0;
    for (let j = 0; j < width; j++) {
      const dev = pixels[row + j] / 255 - blockMean[j];
      squares[j] += dev * dev;
    }
  }
  for (let j = 0; j < width; j++) {
    mean[j0 + j] = blockMean[j];
    std[j0 + j] = Math.sqrt(squares[j] / count);
  }
}

/** Rows [i0, i1): out[i·dims + j] = (pixel / 255 − mean[j]) / divisor[j] for j < dims, in float64, stored as float32. */
export function standardizeRowsBlock(pixels: Uint8Array, dims: number, i0: number, i1: number, mean: Float64Array, divisor: Float64Array, out: Float32Array): void {
  for (let i = i0; i < i1; i++) {
    const src = i * PIXEL_ROW_BYTES;
    const dst = i * dims;
    for (let j = 0; j < dims; j++) out[dst + j] = (pixels[src + j] / 255 - mean[j]) / divisor[j];
  }
}

