import { createPrng, nextInt, type Float32Matrix } from '@bnmlp/core';
import { CIFAR_PIXELS, computeFeatureStats, sharedUint8Array, standardizeFeatures, type CifarData, type FeatureStats } from './cifar.js';
import { loadCifarDataset, type CifarFileInfo } from './cifar-layout.js';
import { TrainerArgumentError } from './errors.js';
import { flipTransform, type FlipTransform } from './flip.js';
import type { DataSpec } from './train-config.js';

/*
The model report's splits: training rows from the training files (the first N, or N seeded random
ones), validation either from separate files or held out from the training files, test from
test_batch. Features are standardised by the training split's per-feature mean and population
std only, and the same transform is applied to every split.
*/

export interface LabeledSplit {
  readonly x: Float32Matrix;
  readonly labels: Uint8Array;
}

export interface DataSourceInfo {
  readonly dir: string;
  readonly format: string;
  /** Every file read, with its sha256 (what a config's data.checksums records). */
  readonly files: ReadonlyArray<{ readonly name: string; readonly role: string; readonly bytes: number; readonly sha256: string }>;
}

export interface PreparedData {
  readonly train: LabeledSplit;
  readonly validation: LabeledSplit | null;
  readonly test: LabeledSplit | null;
  readonly stats: FeatureStats;
  readonly classNames: readonly string[];
  readonly source: DataSourceInfo;
  /** Horizontal-flip transform of standardised rows (only when data.flip). */
  readonly flip: FlipTransform | null;
  /** Where the data differs from what was asked (e.g. fewer rows than trainCount), for the output. */
  readonly notes: readonly string[];
}

/** The data a run read differs from the checksums in its config (another copy, or a changed file). */
export class DataChecksumError extends TrainerArgumentError {
  override readonly name: string = 'DataChecksumError';
  constructor(
    readonly file: string,
    readonly expectedSha256: string,
    readonly actualSha256: string | null,
  ) {
    super('prepareData', `data.checksums.${file}`, `sha256 ${expectedSha256}`, actualSha256 ? `sha256 ${actualSha256}` : 'no such file was read');
    this.message = actualSha256
      ? `data file ${file} differs from the one this config was made with (sha256 ${actualSha256}, expected ${expectedSha256}): point --data at the same copy of the data`
      : `data file ${file} is listed in the config's checksums but was not read from this data directory`;
  }
}

function baseName(path: string): string {
  const name = path.split(/[\\/]/).pop()!;
  return name.replace(/\.(bin|mat)$/, '');
}

function fileEntries(files: readonly CifarFileInfo[]): DataSourceInfo['files'] {
  return files.map((f) => ({ name: baseName(f.path), role: f.role, bytes: f.bytes, sha256: f.sha256 }));
}

/** Rows `indices` of `data`, as a new CifarData (the pixels copied once). */
function gatherRecords(data: CifarData, indices: Int32Array): CifarData {
  const pixels = sharedUint8Array(indices.length * CIFAR_PIXELS);
  const labels = new Uint8Array(indices.length);
  indices.forEach((row, i) => {
    pixels.set(data.pixels.subarray(row * CIFAR_PIXELS, (row + 1) * CIFAR_PIXELS), i * CIFAR_PIXELS);
    labels[i] = data.labels[row];
  });
  return { count: indices.length, pixels, labels, sources: data.sources };
}

function range(start: number, end: number): Int32Array {
  return Int32Array.from({ length: end - start }, (_, i) => start + i);
}

/** A seeded permutation of 0..n−1 (Fisher–Yates), independent of the training PRNG. */
function permutation(n: number, seed: number): Int32Array {
  const order = range(0, n);
  const prng = createPrng((seed ^ 0x5eed5a17) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = nextInt(prng, i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * Reads the data a config names from `dir` (its data.dir when set, else the caller's default) and
 * returns standardised splits. Checks data.checksums when the config has them.
 */
export function prepareData(spec: DataSpec, dir: string, seed: number): PreparedData {
  const notes: string[] = [];
  const trainSet = loadCifarDataset(dir, { ...(spec.trainFiles ? { train: spec.trainFiles } : {}), test: spec.test });
  if (spec.test && !trainSet.test) throw new TrainerArgumentError('prepareData', 'data.test', `a test_batch file in '${trainSet.dir}'`, 'none (set data.test to false)');
  const validationSet = spec.validationFiles.length > 0 ? loadCifarDataset(dir, { train: spec.validationFiles, test: false }) : null;
  const files = [...trainSet.files, ...(validationSet ? validationSet.files.filter((f) => f.role === 'train') : [])];
  const source: DataSourceInfo = { dir: trainSet.dir, format: trainSet.format, files: fileEntries(files) };
  if (spec.checksums) verifyChecksums(spec.checksums, source);

  const pool = trainSet.train;
  const order = spec.selection === 'random' ? permutation(pool.count, seed) : range(0, pool.count);
  let validationRecords: CifarData | null = validationSet ? validationSet.train : null;
  let available = order;
  if (!validationSet && spec.validationCount > 0) {
    if (spec.validationCount >= pool.count)
      throw new TrainerArgumentError('prepareData', 'data.validationCount', `fewer than the ${pool.count} training rows`, String(spec.validationCount));
    validationRecords = gatherRecords(pool, order.subarray(pool.count - spec.validationCount));
    available = order.subarray(0, pool.count - spec.validationCount);
  }
  let trainIndices = available;
  if (spec.trainCount !== null) {
    if (spec.trainCount > available.length) notes.push(`asked for ${spec.trainCount} training images, the data holds ${available.length}: using all ${available.length}`);
    trainIndices = available.subarray(0, Math.min(spec.trainCount, available.length));
  }
  // Contiguous first rows need no copy of the pixels.
  const contiguous = trainIndices.length === 0 || trainIndices.every((row, i) => row === trainIndices[0] + i);
  const trainRecords = contiguous
    ? { ...pool, count: trainIndices.length, pixels: pool.pixels.subarray(trainIndices[0] * CIFAR_PIXELS, (trainIndices[0] + trainIndices.length) * CIFAR_PIXELS), labels: pool.labels.subarray(trainIndices[0], trainIndices[0] + trainIndices.length) }
    : gatherRecords(pool, trainIndices);
  if (trainRecords.count < 2) throw new TrainerArgumentError('prepareData', 'data', 'at least 2 training images', String(trainRecords.count));

  const stats = computeFeatureStats(trainRecords, { dims: spec.dims });
  const split = (records: CifarData): LabeledSplit => ({ x: standardizeFeatures(records, stats), labels: records.labels.slice() });
  return {
    train: split(trainRecords),
    validation: validationRecords && validationRecords.count > 0 ? split(validationRecords) : null,
    test: spec.test && trainSet.test ? split(trainSet.test) : null,
    stats,
    classNames: trainSet.classNames,
    source,
    flip: spec.flip ? flipTransform(stats) : null,
    notes,
  };
}

export function verifyChecksums(expected: Readonly<Record<string, string>>, source: DataSourceInfo): void {
  for (const [name, sha256] of Object.entries(expected)) {
    const file = source.files.find((f) => f.name === name);
    if (!file) throw new DataChecksumError(name, sha256, null);
    if (file.sha256 !== sha256) throw new DataChecksumError(name, sha256, file.sha256);
  }
}

/** data.checksums for a config: every file a run read, by name. */
export function checksumsOf(source: DataSourceInfo): Record<string, string> {
  return Object.fromEntries(source.files.map((f) => [f.name, f.sha256]));
}
