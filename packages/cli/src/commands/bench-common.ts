import type { Float32Matrix } from '@bnmlp/core';
import { sharedFloat32Array } from '@bnmlp/trainer';

/* What the bench suites share: CIFAR-shaped generated data and the statistics of repeated runs. */

export const INPUT_DIM = 3072;
export const CLASSES = 10;

export function quantile(sorted: readonly number[], q: number): number {
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

export function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

/** A figure measured once per repeat: the median and the range over the repeats, and every run. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: readonly number[];
}

export function spread(runs: readonly number[]): Spread {
  if (runs.length === 0) throw new RangeError('spread: no runs');
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs: [...runs] };
}

/** Pairwise a[i] / b[i] over the repeats (each pair measured close together in time). */
export function ratioSpread(ours: readonly number[], theirs: readonly number[]): Spread {
  if (ours.length !== theirs.length) throw new RangeError(`ratioSpread: ${ours.length} runs against ${theirs.length}`);
  return spread(ours.map((v, i) => v / theirs[i]));
}

/** "1.23× (1.10–1.40)": a ratio's median and its range over the repeats (no range for one run). */
export function formatRatio(r: Spread, digits = 2): string {
  return r.runs.length > 1 ? `${r.median.toFixed(digits)}× (${r.min.toFixed(digits)}–${r.max.toFixed(digits)})` : `${r.median.toFixed(digits)}×`;
}

/** "(1.02–1.10)" for several runs, '' for one. */
export function formatRange(r: Spread, digits: number, unit = ''): string {
  return r.runs.length > 1 ? ` (${r.min.toFixed(digits)}–${r.max.toFixed(digits)}${unit})` : '';
}

export const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/**
 * CIFAR-shaped samples (`inputDim` columns, default 3072): unit-variance uniform noise (the
 * distribution does not change the speed) and random labels.
 */
export function syntheticSet(samples: number, seed: number, inputDim = INPUT_DIM): { x: Float32Matrix; labels: Uint8Array } {
  // Shared, as the trainer's standardised sets: a kernel thread can gather batches from it.
  const data = sharedFloat32Array(samples * inputDim);
  let state = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const scale = Math.sqrt(12) / 4294967296;
  for (let i = 0; i < data.length; i++) {
    // xorshift32: fast enough to fill 614 MB in about a second.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[i] = ((state >>> 0) - 2147483648) * scale;
  }
  const labels = new Uint8Array(samples);
  for (let i = 0; i < samples; i++) labels[i] = (data[i * inputDim] * 1e4 >>> 0) % CLASSES;
  return { x: { rows: samples, cols: inputDim, data }, labels };
}
