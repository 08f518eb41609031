import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CifarFormatError, TrainerArgumentError } from './errors.js';
import { runDataJob } from './data-threads.js';
import { findInAncestors, isFile } from './shared-paths.js';

/*
CIFAR-10 binary batches (cifar-10-batches-bin): each record is 1 label byte (0-9) followed by
3072 pixel bytes: 1024 red, 1024 green, 1024 blue, each a row-major 32×32 plane. A file holds any
whole, positive number of records (10000 in the official files, 1000 in the shared subset).

Pixels stay bytes (Uint8Array, n × 3072, row-major) until preprocessing, which writes Float32Array
features once; statistics are accumulated in float64. Nothing here holds pixels in JS number arrays.
*/

export const CIFAR_PIXELS = 3072;
export const CIFAR_RECORD_BYTES = 1 + CIFAR_PIXELS;
export const CIFAR_CLASSES = 10;
export const CIFAR_META_FILE = 'batches.meta.txt';
export const CIFAR_TEST_FILE = 'test_batch.bin';
/** The environment variable that overrides locateSharedCifar's search. */
export const CIFAR_DIR_ENV = 'BNMLP_CIFAR_DIR';
/** Where the shared subset lives relative to an ancestor of the repository (usually the repo's parent). */
export const SHARED_CIFAR_RELATIVE_PATH = join('shared', 'datasets', 'cifar-10-subset');

export interface CifarData {
  readonly count: number;
  /**
   * count × 3072 bytes, row-major: record i is pixels[i·3072, (i+1)·3072). The readers put them
   * on a SharedArrayBuffer, so that statistics and standardisation can run on two threads.
   */
  readonly pixels: Uint8Array;
  /** count labels in 0..9. */
  readonly labels: Uint8Array;
  /** The files (or buffer labels) the records came from, in order. */
  readonly sources: readonly string[];
}

export interface CifarDataset {
  readonly dir: string;
  /** Class names by label, from batches.meta.txt. */
  readonly classNames: readonly string[];
  readonly train: CifarData;
  /** null when no test file was requested or (by default) none exists. */
  readonly test: CifarData | null;
}

export interface ReadCifarDirectoryOptions {
  /**
   * Training files, relative to the directory; a name without `.bin` also matches `name.bin`.
   * Default: every `data_batch_<n>.bin` in the directory, by n.
   */
  readonly train?: readonly string[];
  /** Test file; null for none. Default: `test_batch.bin` when it exists, else none. */
  readonly test?: string | null;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'number') return String(value);
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Uint8Array).length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  return typeof value;
}

function recordCount(op: string, byteLength: number, file: string): number {
  if (byteLength === 0 || byteLength % CIFAR_RECORD_BYTES !== 0) {
    const whole = Math.floor(byteLength / CIFAR_RECORD_BYTES);
    throw new CifarFormatError(
      op, 'byte length', `a positive multiple of ${CIFAR_RECORD_BYTES} (1 label byte + ${CIFAR_PIXELS} pixel bytes per record)`,
      `${byteLength} bytes (${whole} whole records + ${byteLength - whole * CIFAR_RECORD_BYTES} bytes)`, file, null,
    );
  }
  return byteLength / CIFAR_RECORD_BYTES;
}

/** Splits the `count` records of `bytes` into `target` from record `first` on. */
function decodeInto(op: string, bytes: Uint8Array, count: number, file: string, target: { pixels: Uint8Array; labels: Uint8Array }, first: number): void {
  for (let r = 0; r < count; r++) {
    const offset = r * CIFAR_RECORD_BYTES;
    const label = bytes[offset];
    if (label >= CIFAR_CLASSES)
      throw new CifarFormatError(op, 'label byte', `in 0..${CIFAR_CLASSES - 1}`, `${label} (byte offset ${offset})`, file, r);
    target.labels[first + r] = label;
    target.pixels.set(bytes.subarray(offset + 1, offset + CIFAR_RECORD_BYTES), (first + r) * CIFAR_PIXELS);
  }
}

/**
 * Parses one CIFAR-10 binary batch. `source` names the buffer in errors (a file path, say).
 * The pixels are copied once into a contiguous n × 3072 array; `bytes` is not kept.
 */
export function parseCifarBatch(bytes: Uint8Array, source = '<buffer>'): CifarData {
  const op = 'parseCifarBatch';
  if (!(bytes instanceof Uint8Array)) throw new TrainerArgumentError(op, 'bytes', 'a Uint8Array or Buffer', describe(bytes));
  return decodeBatches(op, [recordCount(op, bytes.length, source)], [source], () => bytes);
}

/** One binary batch for decodeCifarBatches: its name (in errors, and in the result's sources) and its size in bytes. */
export interface CifarBatchSource {
  readonly name: string;
  readonly bytes: number;
}

/**
 * Decodes binary batches into one CifarData, allocated once, the records of each batch after the
 * previous one's. `batches` give every batch's name and size first, so the result is allocated
 * before any is read; `bytesOf(i)` is asked for batch i's bytes only when its turn comes, so a
 * reader of files holds one raw file at a time. Bytes of another length than announced are
 * reported, not misread.
 */
export function decodeCifarBatches(batches: readonly CifarBatchSource[], bytesOf: (i: number) => Uint8Array): CifarData {
  const op = 'decodeCifarBatches';
  if (!Array.isArray(batches) || batches.length === 0) throw new TrainerArgumentError(op, 'batches', 'a non-empty array of { name, bytes }', describe(batches));
  batches.forEach((batch, i) => {
    if (!batch || typeof batch.name !== 'string' || !Number.isInteger(batch.bytes) || batch.bytes < 0)
      throw new TrainerArgumentError(op, `batches[${i}]`, '{ name: a string, bytes: an integer >= 0 }', describe(batch));
  });
  if (typeof bytesOf !== 'function') throw new TrainerArgumentError(op, 'bytesOf', 'a function (i) => Uint8Array', describe(bytesOf));
  const sources = batches.map((batch) => batch.name);
  const counts = batches.map((batch) => recordCount(op, batch.bytes, batch.name));
  return decodeBatches(op, counts, sources, (i) => {
    const bytes = bytesOf(i);
    if (!(bytes instanceof Uint8Array)) throw new TrainerArgumentError(op, `bytesOf(${i})`, 'a Uint8Array or Buffer', describe(bytes));
    return bytes;
  });
}

/**
 * Records of several batches into one CifarData allocated once (`counts[i]` records from source
 * i), each batch's bytes asked for only when its turn comes (so a reader holds one raw file); bytes
 * of another length than counts[i] records are reported (a file that changed since it was measured).
 */
function decodeBatches(op: string, counts: readonly number[], sources: readonly string[], bytesOf: (i: number) => Uint8Array): CifarData {
  const total = counts.reduce((a, b) => a + b, 0);
  const target = { pixels: sharedUint8Array(total * CIFAR_PIXELS), labels: new Uint8Array(total) };
  let first = 0;
  sources.forEach((source, i) => {
    const bytes = bytesOf(i);
    if (bytes.length !== counts[i] * CIFAR_RECORD_BYTES)
      throw new CifarFormatError(op, 'byte length', `${counts[i] * CIFAR_RECORD_BYTES} bytes (its size when reading began)`, `${bytes.length} bytes`, source, null);
    decodeInto(op, bytes, counts[i], source, target, first);
    first += counts[i];
  });
  return { count: total, ...target, sources: [...sources] };
}

function fileSize(op: string, argument: string, path: string): number {
  let stats;
  try {
    stats = statSync(path);
  } catch (error) {
    throw new TrainerArgumentError(op, argument, 'an existing CIFAR-10 batch file', `'${path}' (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  if (!stats.isFile()) throw new TrainerArgumentError(op, argument, 'a regular file', `'${path}' (not a file)`);
  return stats.size;
}

/** Reads and parses one batch file. */
export function readCifarBatch(path: string): CifarData {
  if (typeof path !== 'string' || path === '') throw new TrainerArgumentError('readCifarBatch', 'path', 'a file path', describe(path));
  return readBatches('readCifarBatch', [path], () => 'path');
}

/**
 * Reads several batch files into one CifarData, allocating the result once (every file's size is
 * checked before anything is read) and holding at most one raw file besides it.
 */
export function readCifarBatches(paths: readonly string[]): CifarData {
  if (!Array.isArray(paths) || paths.length === 0 || paths.some((p) => typeof p !== 'string' || p === ''))
    throw new TrainerArgumentError('readCifarBatches', 'paths', 'a non-empty array of file paths', describe(paths));
  return readBatches('readCifarBatches', paths, (i) => `paths[${i}]`);
}

function readBatches(op: string, paths: readonly string[], argument: (i: number) => string): CifarData {
  const counts = paths.map((path, i) => recordCount(op, fileSize(op, argument(i), path), path));
  return decodeBatches(op, counts, paths, (i) => readFileSync(paths[i]));
}

/** Class names by label: the non-empty lines of batches.meta.txt; there must be exactly 10. */
export function readCifarClassNames(path: string): string[] {
  const op = 'readCifarClassNames';
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new TrainerArgumentError(op, 'path', `an existing ${CIFAR_META_FILE}`, `'${path}' (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  const names = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== '');
  if (names.length !== CIFAR_CLASSES)
    throw new CifarFormatError(op, 'class names', `${CIFAR_CLASSES} non-empty lines`, `${names.length} lines`, path, null);
  return names;
}

const TRAIN_FILE = /^data_batch_(\d+)\.bin$/;

function resolveBatchFile(op: string, argument: string, dir: string, name: string): string {
  if (typeof name !== 'string' || name === '') throw new TrainerArgumentError(op, argument, 'a file name', describe(name));
  for (const candidate of [join(dir, name), join(dir, `${name}.bin`)]) if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  throw new TrainerArgumentError(op, argument, `a file in '${dir}' (as given or with .bin)`, `'${name}' (not found)`);
}

/**
 * Reads a cifar-10-batches-bin directory: the training files into one CifarData, the test file,
 * and the class names. See ReadCifarDirectoryOptions for the defaults.
 */
export function readCifarDirectory(dir: string, options: ReadCifarDirectoryOptions = {}): CifarDataset {
  const op = 'readCifarDirectory';
  if (typeof dir !== 'string' || dir === '' || !existsSync(dir) || !statSync(dir).isDirectory())
    throw new TrainerArgumentError(op, 'dir', 'an existing directory', describe(dir));
  const root = resolve(dir);
  let trainPaths: string[];
  if (options.train) {
    if (!Array.isArray(options.train) || options.train.length === 0)
      throw new TrainerArgumentError(op, 'options.train', 'a non-empty array of file names', describe(options.train));
    trainPaths = options.train.map((name, i) => resolveBatchFile(op, `options.train[${i}]`, root, name));
  } else {
    trainPaths = readdirSync(root)
      .map((name) => ({ name, match: TRAIN_FILE.exec(name) }))
      .filter(({ match }) => match !== null)
      .sort((a, b) => Number(a.match![1]) - Number(b.match![1]))
      .map(({ name }) => join(root, name));
    if (trainPaths.length === 0) throw new TrainerArgumentError(op, 'dir', 'a directory with data_batch_<n>.bin files', `'${root}' (none found)`);
  }
  let testPath: string | null = null;
  if (options.test === undefined) {
    const candidate = join(root, CIFAR_TEST_FILE);
    testPath = existsSync(candidate) ? candidate : null;
  } else if (options.test !== null) {
    testPath = resolveBatchFile(op, 'options.test', root, options.test);
  }
  return {
    dir: root,
    classNames: readCifarClassNames(join(root, CIFAR_META_FILE)),
    train: readCifarBatches(trainPaths),
    test: testPath ? readCifarBatch(testPath) : null,
  };
}

function validateData(op: string, argument: string, data: CifarData): void {
  if (!data || typeof data !== 'object') throw new TrainerArgumentError(op, argument, 'CIFAR data { count, pixels, labels }', describe(data));
  const { count, pixels, labels } = data;
  if (!Number.isInteger(count) || count < 0) throw new TrainerArgumentError(op, `${argument}.count`, 'an integer >= 0', describe(count));
  if (!(pixels instanceof Uint8Array) || pixels.length !== count * CIFAR_PIXELS)
    throw new TrainerArgumentError(op, `${argument}.pixels`, `a Uint8Array of count × ${CIFAR_PIXELS} = ${count * CIFAR_PIXELS} bytes`, describe(pixels));
  if (!(labels instanceof Uint8Array) || labels.length !== count)
    throw new TrainerArgumentError(op, `${argument}.labels`, `a Uint8Array of ${count} labels`, describe(labels));
}

/** Records [start, end) as views into the same buffers (no copy). */
export function sliceRecords(data: CifarData, start: number, end: number): CifarData {
  const op = 'sliceRecords';
  validateData(op, 'data', data);
  if (!Number.isInteger(start) || start < 0 || start > data.count) throw new TrainerArgumentError(op, 'start', `an integer in [0, ${data.count}]`, describe(start));
  if (!Number.isInteger(end) || end < start || end > data.count) throw new TrainerArgumentError(op, 'end', `an integer in [${start}, ${data.count}]`, describe(end));
  return {
    count: end - start,
    pixels: data.pixels.subarray(start * CIFAR_PIXELS, end * CIFAR_PIXELS),
    labels: data.labels.subarray(start, end),
    sources: data.sources,
  };
}

/** A dense row-major float32 matrix: entry (i, j) is `data[i * cols + j]` (samples are rows). */
export interface FeatureMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
}

/**
 * Per-feature statistics of the training set for the first `dims` features, after scaling to [0, 1]
 * (pixel / 255): mean and population standard deviation (divide by n), both float64.
 */
export interface FeatureStats {
  readonly dims: number;
  /** Training records the statistics were computed from. */
  readonly count: number;
  readonly mean: Float64Array;
  readonly std: Float64Array;
}

function validateDims(op: string, dims: number): void {
  if (!Number.isInteger(dims) || dims < 1 || dims > CIFAR_PIXELS) throw new TrainerArgumentError(op, 'dims', `an integer in [1, ${CIFAR_PIXELS}]`, describe(dims));
}

/**
 * Training-set statistics of the first `dims` (default all 3072) features, scaled to [0, 1].
 * Two passes in float64: the exact integer pixel sums give the mean, then squared deviations
 * from it give the variance (no E[x²] − E[x]² cancellation).
 */
export function computeFeatureStats(train: CifarData, options: { readonly dims?: number } = {}): FeatureStats {
  const op = 'computeFeatureStats';
  validateData(op, 'train', train);
  const dims = options.dims ?? CIFAR_PIXELS;
  validateDims(op, dims);
  const n = train.count;
  if (n < 1) throw new TrainerArgumentError(op, 'train.count', 'at least 1 record', '0');
  // Both passes run in data-kernels.ts, on two threads when the set is large (data-threads.ts).
  const mean = sharedFloat64Array(dims);
  const std = sharedFloat64Array(dims);
  runDataJob({ kind: 'stats', pixels: train.pixels, count: n, dims, mean, std });
  return { dims, count: n, mean: new Float64Array(mean), std: new Float64Array(std) };
}

/**
 * A zeroed buffer of `bytes` on a SharedArrayBuffer, or null where there is none.
 *
 * V8 starts a garbage collection when the memory of ordinary ArrayBuffers grows, but not for
 * SharedArrayBuffers: dropped ones stay until a collection made for other reasons. Five data
 * preparations in one process (as `bnmlp reproduce` makes, with training in between) grew to
 * 3.2 GB RSS that way (2026-12-02, 60,000 generated images). So a large shared buffer is first
 * announced as an ordinary ArrayBuffer of its size, allocated and dropped untouched (no page of it
 * is ever resident): V8 counts it as any ArrayBuffer and collects in time what was dropped before.
 */
function sharedBuffer(bytes: number): SharedArrayBuffer | null {
  if (typeof SharedArrayBuffer === 'undefined') return null;
  if (bytes >= ANNOUNCED_SHARED_BYTES) {
    const announcement = new ArrayBuffer(bytes);
    void announcement;
  }
  return new SharedArrayBuffer(bytes);
}

/** Shared buffers from this size on are announced (sharedBuffer); smaller ones cannot pile up much. */
const ANNOUNCED_SHARED_BYTES = 16 << 20;

/**
 * A zeroed Float32Array on a SharedArrayBuffer (a plain one where there is none): a kernel thread
 * can then gather mini-batches from it (MiniBatcher.prefetchInBackground). It is an ordinary
 * Float32Array otherwise, freed by the garbage collector as any (see sharedBuffer).
 */
export function sharedFloat32Array(length: number): Float32Array {
  const buffer = sharedBuffer(length * 4);
  return buffer ? new Float32Array(buffer) : new Float32Array(length);
}

/** A zeroed Float64Array on a SharedArrayBuffer (a plain one where there is none). */
function sharedFloat64Array(length: number): Float64Array {
  const buffer = sharedBuffer(length * 8);
  return buffer ? new Float64Array(buffer) : new Float64Array(length);
}

/**
 * A zeroed Uint8Array on a SharedArrayBuffer (a plain one where there is none): the readers put
 * pixels there so that standardisation can run on two threads (data-threads.ts).
 */
export function sharedUint8Array(length: number): Uint8Array {
  const buffer = sharedBuffer(length);
  return buffer ? new Uint8Array(buffer) : new Uint8Array(length);
}

/**
 * Features of every record: x = (pixel / 255 − mean) / std for the first stats.dims features,
 * computed in float64 and stored as float32. A feature whose training std is 0 is only centered
 * (divided by 1), so it is 0 on the training set and keeps its offset elsewhere, as scikit-learn's
 * StandardScaler does. Apply the training set's stats to validation and test data.
 */
export function standardizeFeatures(data: CifarData, stats: FeatureStats): FeatureMatrix {
  const op = 'standardizeFeatures';
  validateData(op, 'data', data);
  validateStats(op, stats);
  const { dims, mean } = stats;
  const divisor = stats.std.map((s) => (s > 0 ? s : 1));
  const out = sharedFloat32Array(data.count * dims);
  runDataJob({ kind: 'standardize', pixels: data.pixels, rows: data.count, dims, mean: Float64Array.from(mean), divisor, out });
  return { rows: data.count, cols: dims, data: out };
}

function validateStats(op: string, stats: FeatureStats): void {
  if (!stats || typeof stats !== 'object') throw new TrainerArgumentError(op, 'stats', 'FeatureStats { dims, count, mean, std }', describe(stats));
  validateDims(op, stats.dims);
  for (const key of ['mean', 'std'] as const)
    if (!(stats[key] instanceof Float64Array) || stats[key].length !== stats.dims)
      throw new TrainerArgumentError(op, `stats.${key}`, `a Float64Array of ${stats.dims} values`, describe(stats[key]));
}

/** The first d columns of a feature matrix, as a new matrix. */
export function firstFeatures(features: FeatureMatrix, d: number): FeatureMatrix {
  const op = 'firstFeatures';
  if (!features || !(features.data instanceof Float32Array) || features.data.length !== features.rows * features.cols)
    throw new TrainerArgumentError(op, 'features', 'a FeatureMatrix with data of length rows × cols', describe(features?.data));
  if (!Number.isInteger(d) || d < 1 || d > features.cols) throw new TrainerArgumentError(op, 'd', `an integer in [1, ${features.cols}]`, describe(d));
  const out = sharedFloat32Array(features.rows * d);
  for (let i = 0; i < features.rows; i++) out.set(features.data.subarray(i * features.cols, i * features.cols + d), i * d);
  return { rows: features.rows, cols: d, data: out };
}

/**
 * The usual preprocessing: statistics of the first `dims` features over `train`, then the same
 * standardization applied to `train` and to each of `others` (validation, test).
 */
export function preprocessCifar(
  train: CifarData,
  others: readonly CifarData[] = [],
  options: { readonly dims?: number } = {},
): { stats: FeatureStats; train: FeatureMatrix; others: FeatureMatrix[] } {
  const stats = computeFeatureStats(train, options);
  return { stats, train: standardizeFeatures(train, stats), others: others.map((data) => standardizeFeatures(data, stats)) };
}

export interface LocateSharedCifarOptions {
  /** Default process.env; a non-empty BNMLP_CIFAR_DIR is used as is (and must be a CIFAR directory). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Default process.cwd(). */
  readonly cwd?: string;
  /** Default this module's directory. */
  readonly moduleDir?: string;
}

/** A directory that looks like cifar-10-batches-bin: it holds data_batch_1.bin. */
export function isCifarDirectory(dir: string): boolean {
  return isFile(join(dir, 'data_batch_1.bin'));
}

/**
 * The shared CIFAR-10 subset, or null: $BNMLP_CIFAR_DIR when set (an error if it is not a CIFAR
 * directory: an explicit choice is never silently replaced), else the first
 * `<ancestor>/shared/datasets/cifar-10-subset` walking up from the working directory and then
 * from this module's directory (so `../shared` beside the repository is found from anywhere inside it).
 */
export function locateSharedCifar(options: LocateSharedCifarOptions = {}): string | null {
  const env = options.env ?? process.env;
  const fromEnv = env[CIFAR_DIR_ENV];
  if (fromEnv) {
    const dir = resolve(fromEnv);
    if (!isCifarDirectory(dir))
      throw new TrainerArgumentError('locateSharedCifar', CIFAR_DIR_ENV, 'a directory containing data_batch_1.bin', `'${fromEnv}'`);
    return dir;
  }
  return findInAncestors(SHARED_CIFAR_RELATIVE_PATH, isCifarDirectory, [options.cwd ?? process.cwd(), options.moduleDir ?? dirname(fileURLToPath(import.meta.url))]);
}
