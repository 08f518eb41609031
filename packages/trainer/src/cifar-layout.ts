import { createHash, type Hash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CIFAR_CLASSES, CIFAR_PIXELS, CIFAR_RECORD_BYTES, decodeCifarBatches, parseCifarBatch, sharedUint8Array, type CifarData, type CifarDataset } from './cifar.js';
import { parseCifarMat, parseCifarMatMeta } from './cifar-mat.js';
import { parseCifarPickle, parseCifarPickleMeta } from './cifar-python.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';
import { isFile } from './shared-paths.js';

/*
CIFAR-10 ships in three layouts with the same images: cifar-10-batches-bin (data_batch_<n>.bin,
test_batch.bin, batches.meta.txt; also the shared subset's layout), cifar-10-batches-py
(data_batch_<n>, test_batch, batches.meta: pickles) and cifar-10-batches-mat (the same names with
.mat). detectCifarLayout recognises a directory by its files, or a folder holding extracted
cifar-10-batches-* directories; loadCifarDataset reads one, hashing each file from the bytes it
parses (every file is read once).

Integrity: only the python files have published md5s (torchvision's list, below). A python file
with an official name and exactly the official file's size claims to be that file, so it must have
its md5: a corrupted download (flipped bytes, same size) is caught even though it may still
unpickle, while a user's re-save (a Python 3 protocol, other records: another size) is not held to
it. A truncated download is caught by the parser. For binary and MATLAB files only size and
structure can be checked (10000 records per official batch file).
*/

export type CifarFormat = 'binary' | 'python' | 'matlab';

/** A recognised CIFAR-10 directory. Paths are absolute. */
export interface CifarLayout {
  readonly format: CifarFormat;
  /** The directory holding the files: `dir` itself or its cifar-10-batches-{bin,py,mat}. */
  readonly dir: string;
  /** data_batch_<n> files of the format, by n. */
  readonly trainFiles: readonly string[];
  readonly testFile: string | null;
  readonly metaFile: string | null;
  /** Other layouts found under the same `dir` argument and not chosen (binary is preferred, then python, then matlab). */
  readonly others: readonly { readonly format: CifarFormat; readonly dir: string }[];
}

interface FormatSpec {
  readonly format: CifarFormat;
  readonly subdir: string;
  readonly extension: string;
  readonly meta: string;
}

/** In order of preference: binary is the cheapest to read and the project's reference layout. */
const FORMATS: readonly FormatSpec[] = [
  { format: 'binary', subdir: 'cifar-10-batches-bin', extension: '.bin', meta: 'batches.meta.txt' },
  { format: 'python', subdir: 'cifar-10-batches-py', extension: '', meta: 'batches.meta' },
  { format: 'matlab', subdir: 'cifar-10-batches-mat', extension: '.mat', meta: 'batches.meta.mat' },
];

/** Records in each official batch file (a binary one is 10000 × 3073 = 30,730,000 bytes). */
export const CIFAR_OFFICIAL_RECORDS = 10000;

/**
 * The official cifar-10-batches-py files: md5 (torchvision's list) and size in bytes. No per-file
 * md5 is published for the binary and MATLAB files.
 */
export const OFFICIAL_CIFAR_PYTHON_FILES: Readonly<Record<string, { readonly md5: string; readonly bytes: number }>> = Object.freeze({
  data_batch_1: { md5: 'c99cafc152244af753f735de768cd75f', bytes: 31035704 },
  data_batch_2: { md5: 'd4bba439e000b95fd0a9bffe97cbabec', bytes: 31035320 },
  data_batch_3: { md5: '54ebc095f3ab1f0389bbae665268c751', bytes: 31035999 },
  data_batch_4: { md5: '634d18415352ddfa80567beed471001a', bytes: 31035696 },
  data_batch_5: { md5: '482c414d41f54cd18b22e5b47cb7c3cb', bytes: 31035623 },
  test_batch: { md5: '40351d587109b95175f43aff81a1287e', bytes: 31035526 },
  'batches.meta': { md5: '5ff9c542aee3614f3951f8cda6e48888', bytes: 158 },
});

function officialFile(path: string): { readonly md5: string; readonly bytes: number } | null {
  const name = basename(path);
  return Object.hasOwn(OFFICIAL_CIFAR_PYTHON_FILES, name) ? OFFICIAL_CIFAR_PYTHON_FILES[name] : null;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return `array(${value.length})`;
  return value === null || value === undefined || typeof value !== 'object' ? String(value) : typeof value;
}

function layoutIn(dir: string, spec: FormatSpec): Omit<CifarLayout, 'others'> | null {
  const pattern = new RegExp(`^data_batch_(\\d+)${spec.extension.replace('.', '\\.')}$`);
  const trainFiles = readdirSync(dir)
    .map((name) => ({ name, match: pattern.exec(name) }))
    .filter(({ name, match }) => match !== null && isFile(join(dir, name)))
    .sort((a, b) => Number(a.match![1]) - Number(b.match![1]))
    .map(({ name }) => join(dir, name));
  if (trainFiles.length === 0) return null;
  const optional = (name: string) => (isFile(join(dir, name)) ? join(dir, name) : null);
  return { format: spec.format, dir, trainFiles, testFile: optional(`test_batch${spec.extension}`), metaFile: optional(spec.meta) };
}

/**
 * Recognises a CIFAR-10 directory by its contents: one of cifar-10-batches-{bin,py,mat} (or the
 * shared subset, binary), or a folder holding one or more of them. Files in `dir` itself win over
 * subdirectories; among formats binary wins, then python, then matlab (`others` lists the rest).
 * An unrecognised directory is a CifarFormatError ('unknown layout') naming what was looked for.
 */
export function detectCifarLayout(dir: string): CifarLayout {
  const op = 'detectCifarLayout';
  if (typeof dir !== 'string' || dir === '' || !existsSync(dir) || !statSync(dir).isDirectory())
    throw new TrainerArgumentError(op, 'dir', 'an existing directory', describe(dir));
  const root = resolve(dir);
  const found = [
    ...FORMATS.map((spec) => layoutIn(root, spec)),
    ...FORMATS.map((spec) => {
      const sub = join(root, spec.subdir);
      return existsSync(sub) && statSync(sub).isDirectory() ? layoutIn(sub, spec) : null;
    }),
  ].filter((layout) => layout !== null);
  if (found.length === 0)
    throw new CifarFormatError(
      op, 'layout',
      'a CIFAR-10 directory: data_batch_<n>.bin (binary), data_batch_<n> (python) or data_batch_<n>.mat (matlab) files, or a folder holding cifar-10-batches-bin, -py or -mat',
      'unknown layout (none of these found)', root, null,
    );
  return { ...found[0], others: found.slice(1).map(({ format, dir: other }) => ({ format, dir: other })) };
}

/** Checksums of one file: sha256 and md5 (hex), and whether the md5 is the official one for its name. */
export interface CifarFileHash {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly md5: string;
  /** The md5 is the official one for the file's name (OFFICIAL_CIFAR_PYTHON_FILES); always false for binary and .mat files, which have none. */
  readonly official: boolean;
}

export interface CifarFileInfo extends CifarFileHash {
  readonly role: 'train' | 'test' | 'meta';
}

function fileHash(path: string, bytes: number, sha256: Hash, md5: Hash): CifarFileHash {
  const md5Hex = md5.digest('hex');
  return { path, bytes, sha256: sha256.digest('hex'), md5: md5Hex, official: officialFile(path)?.md5 === md5Hex };
}

/**
 * sha256 and md5 of each file, read in 4 MiB chunks (constant memory), for callers that only
 * compare checksums (e.g. a worker checking its files against a config's sha256).
 */
export function hashCifarFiles(paths: readonly string[]): CifarFileHash[] {
  const op = 'hashCifarFiles';
  if (!Array.isArray(paths) || paths.some((p) => typeof p !== 'string' || p === ''))
    throw new TrainerArgumentError(op, 'paths', 'an array of file paths', describe(paths));
  const chunk = Buffer.allocUnsafe(4 << 20);
  return paths.map((path, i) => {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      throw new TrainerArgumentError(op, `paths[${i}]`, 'an existing, readable file', `'${path}' (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
    try {
      const sha256 = createHash('sha256');
      const md5 = createHash('md5');
      let total = 0;
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; total += n) {
        sha256.update(chunk.subarray(0, n));
        md5.update(chunk.subarray(0, n));
      }
      return fileHash(path, total, sha256, md5);
    } finally {
      closeSync(fd);
    }
  });
}

export interface LoadCifarDatasetOptions {
  /** Training files by name without extension (e.g. ['data_batch_1']); default every data_batch_<n>, by n. */
  readonly train?: readonly string[];
  /** Read the test file; default true when there is one. true with no test file is an error. */
  readonly test?: boolean;
  /**
   * true: every file must be official (python: the official md5; binary and matlab: 10000 records
   * per batch file). false: no comparison. Default: a python file that claims to be official (an
   * official name and exactly the official size) must have the official md5.
   */
  readonly verifyOfficial?: boolean;
}

export type LoadedCifarDataset = CifarDataset & { readonly format: CifarFormat; readonly files: readonly CifarFileInfo[] };

function classNamesFromText(op: string, bytes: Uint8Array, path: string): string[] {
  const names = Buffer.from(bytes).toString('utf8').split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== '');
  if (names.length !== CIFAR_CLASSES) throw new CifarFormatError(op, 'class names', `${CIFAR_CLASSES} non-empty lines`, `${names.length} lines`, path, null);
  return names;
}

function concatData(parts: readonly CifarData[]): CifarData {
  if (parts.length === 1) return parts[0];
  const count = parts.reduce((sum, part) => sum + part.count, 0);
  const pixels = sharedUint8Array(count * CIFAR_PIXELS);
  const labels = new Uint8Array(count);
  let first = 0;
  for (const part of parts) {
    pixels.set(part.pixels, first * CIFAR_PIXELS);
    labels.set(part.labels, first);
    first += part.count;
  }
  return { count, pixels, labels, sources: parts.flatMap((part) => part.sources) };
}

/** `access(path)`, with a failure (the file vanished, say) reported as a TrainerArgumentError naming the file. */
function fileAccess<T>(op: string, path: string, access: (path: string) => T): T {
  try {
    return access(path);
  } catch (error) {
    throw new TrainerArgumentError(op, 'file', 'an existing, readable file', `'${path}' (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

function readHashed(op: string, path: string): { bytes: Buffer; hash: CifarFileHash } {
  const bytes = fileAccess(op, path, (file) => readFileSync(file));
  return { bytes, hash: fileHash(path, bytes.length, createHash('sha256').update(bytes), createHash('md5').update(bytes)) };
}

/** Runs a parser; our own errors pass through, anything else (a bug, an exotic input) is named by file. */
function parseNamed<T>(op: string, path: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof TrainerArgumentError) throw error;
    throw new CifarFormatError(op, 'file', 'a readable CIFAR-10 file', `an unexpected failure (${(error as Error).message})`, path, null);
  }
}

function resolveFile(op: string, argument: string, dir: string, name: unknown, extension: string): string {
  if (typeof name !== 'string' || name === '') throw new TrainerArgumentError(op, argument, 'a file name', describe(name));
  for (const candidate of [join(dir, `${name}${extension}`), join(dir, name)]) if (isFile(candidate)) return candidate;
  throw new TrainerArgumentError(op, argument, `a file in '${dir}' (name without '${extension}')`, `'${name}' (not found)`);
}

/** The md5 rule of LoadCifarDatasetOptions.verifyOfficial, checked before parsing (a corrupt file is reported as such). */
function checkMd5(op: string, format: CifarFormat, hash: CifarFileHash, verify: boolean | undefined): void {
  if (format !== 'python' || verify === false || hash.official) return;
  const official = officialFile(hash.path);
  const claims = official !== null && hash.bytes === official.bytes;
  if (!claims && verify !== true) return;
  const name = basename(hash.path);
  throw new CifarFormatError(
    op, 'md5', official ? `${official.md5} (the official ${name})` : 'the md5 of an official file (verifyOfficial: true), but the name is not an official one',
    `${hash.md5} (${claims ? `the official size, ${official!.bytes} bytes, so a corrupted download? ` : ''}pass verifyOfficial: false to accept a modified file)`,
    hash.path, null,
  );
}

/**
 * Reads a CIFAR-10 directory in any of the three layouts (see detectCifarLayout): the training
 * files into one CifarData, the test file, the class names, and each file's size and checksums.
 * Each file is read once; its hashes come from the bytes that are parsed.
 */
export function loadCifarDataset(dir: string, options: LoadCifarDatasetOptions = {}): LoadedCifarDataset {
  const op = 'loadCifarDataset';
  if (options === null || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', 'an options object', describe(options));
  const { verifyOfficial } = options;
  if (verifyOfficial !== undefined && typeof verifyOfficial !== 'boolean')
    throw new TrainerArgumentError(op, 'options.verifyOfficial', 'a boolean', describe(verifyOfficial));
  const layout = detectCifarLayout(dir);
  const { format } = layout;
  const spec = FORMATS.find((f) => f.format === format)!;

  let trainPaths = layout.trainFiles;
  if (options.train !== undefined) {
    if (!Array.isArray(options.train) || options.train.length === 0)
      throw new TrainerArgumentError(op, 'options.train', 'a non-empty array of file names', describe(options.train));
    trainPaths = options.train.map((name, i) => resolveFile(op, `options.train[${i}]`, layout.dir, name, spec.extension));
  }
  if (options.test !== undefined && typeof options.test !== 'boolean') throw new TrainerArgumentError(op, 'options.test', 'a boolean', describe(options.test));
  if (options.test === true && layout.testFile === null)
    throw new TrainerArgumentError(op, 'options.test', `true only when '${layout.dir}' has test_batch${spec.extension}`, 'true (no test file)');
  const testPath = options.test === false ? null : layout.testFile;
  const metaPath = layout.metaFile;
  if (metaPath === null) throw new CifarFormatError(op, 'meta file', `${spec.meta} beside the batches (the class names)`, 'none', layout.dir, null);

  const files: CifarFileInfo[] = [];
  const meta = readHashed(op, metaPath);
  checkMd5(op, format, meta.hash, verifyOfficial);
  const classNames = parseNamed(op, metaPath, () =>
    format === 'binary' ? classNamesFromText(op, meta.bytes, metaPath) : format === 'python' ? parseCifarPickleMeta(meta.bytes, metaPath) : parseCifarMatMeta(meta.bytes, metaPath),
  );
  files.push({ role: 'meta', ...meta.hash });

  const readBatch = (path: string, role: 'train' | 'test'): { path: string; role: 'train' | 'test'; bytes: Buffer } => {
    const { bytes, hash } = readHashed(op, path);
    checkMd5(op, format, hash, verifyOfficial);
    files.push({ role, ...hash });
    return { path, role, bytes };
  };
  const checkRecords = (path: string, records: number): void => {
    if (verifyOfficial === true && format !== 'python' && records !== CIFAR_OFFICIAL_RECORDS)
      throw new CifarFormatError(op, 'records', `${CIFAR_OFFICIAL_RECORDS} (an official batch file; verifyOfficial: true)`, `${records}`, path, null);
  };
  const parseBatch = ({ path, bytes }: { path: string; bytes: Buffer }): CifarData => {
    const data = parseNamed(op, path, () => (format === 'binary' ? parseCifarBatch(bytes, path) : format === 'python' ? parseCifarPickle(bytes, path) : parseCifarMat(bytes, path)));
    checkRecords(path, data.count);
    return data;
  };
  let train: CifarData;
  if (format === 'binary') {
    // Binary files are decoded straight into one array (no per-file copies to concatenate), each
    // read when its turn comes: one raw file held at a time besides the result.
    const batches = trainPaths.map((path) => ({ name: path, bytes: fileAccess(op, path, (file) => statSync(file).size) }));
    train = parseNamed(op, trainPaths.join(', '), () => decodeCifarBatches(batches, (i) => readBatch(trainPaths[i], 'train').bytes));
    batches.forEach(({ name, bytes }) => checkRecords(name, bytes / CIFAR_RECORD_BYTES));
  } else {
    train = concatData(trainPaths.map((path) => parseBatch(readBatch(path, 'train'))));
  }
  const test = testPath === null ? null : parseBatch(readBatch(testPath, 'test'));
  return { dir: layout.dir, format, classNames, train, test, files };
}
