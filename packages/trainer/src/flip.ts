import type { FeatureStats } from './cifar.js';

/**
 * Maps standardised features of an image to those of its mirror image: the flipped pixel at j is
 * the pixel at mirror(j), so x'_j = (x_{mirror(j)}·std_{mirror(j)} + mean_{mirror(j)} − mean_j) / std_j,
 * an exact per-feature affine map of the stored row (flipping standardised rows directly would
 * not be, since every position has its own mean and std).
 */
export interface FlipTransform {
  readonly source: Int32Array;
  readonly scale: Float32Array;
  readonly shift: Float32Array;
}

export function flipTransform(stats: FeatureStats): FlipTransform {
  const { dims } = stats;
  const source = new Int32Array(dims);
  const scale = new Float32Array(dims);
  const shift = new Float32Array(dims);
  const divisor = (j: number) => (stats.std[j] > 0 ? stats.std[j] : 1);
  for (let j = 0; j < dims; j++) {
    const channel = Math.floor(j / 1024);
    const within = j % 1024;
    const mirror = channel * 1024 + Math.floor(within / 32) * 32 + (31 - (within % 32));
    // Features beyond `dims` are not stored: such a position keeps its own value.
    const m = mirror < dims ? mirror : j;
    source[j] = m;
    scale[j] = divisor(m) / divisor(j);
    shift[j] = (stats.mean[m] - stats.mean[j]) / divisor(j);
  }
  return { source, scale, shift };
}

/** Writes the mirror image of standardised row `row` into `out` (same length). */
export function flipRow(transform: FlipTransform, row: Float32Array, out: Float32Array): void {
  const { source, scale, shift } = transform;
  for (let j = 0; j < out.length; j++) out[j] = row[source[j]] * scale[j] + shift[j];
}
