import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OFFICIAL_CIFAR_PYTHON_FILES, detectCifarLayout, hashCifarFiles, loadCifarDataset, type CifarFormat } from './cifar-layout.js';
import { CIFAR_PIXELS, locateSharedCifar, readCifarBatch, readCifarClassNames, readCifarDirectory } from './cifar.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';
import { fixturesDir, tinyCifarDir } from './test-support/paths.js';
import { thrown } from './test-support/thrown.js';

const pyDir = join(fixturesDir, 'cifar-10-tiny-py');
const py3Dir = join(fixturesDir, 'cifar-10-tiny-py3');
const matDir = join(fixturesDir, 'cifar-10-tiny-mat');
const binTrain = readCifarBatch(join(tinyCifarDir, 'data_batch_1.bin'));
const binTest = readCifarBatch(join(tinyCifarDir, 'test_batch.bin'));
const classNames = readCifarClassNames(join(tinyCifarDir, 'batches.meta.txt'));

/** Each fixture directory, its format and its files' extension. */
const FIXTURES: readonly (readonly [string, string, CifarFormat, string, string])[] = [
  ['binary', tinyCifarDir, 'binary', '.bin', 'batches.meta.txt'],
  ['python (protocol 2, official form)', pyDir, 'python', '', 'batches.meta'],
  ['python (protocols 4-5, Python 3 re-save)', py3Dir, 'python', '', 'batches.meta'],
  ['matlab', matDir, 'matlab', '.mat', 'batches.meta.mat'],
];


const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const md5 = (path: string) => createHash('md5').update(readFileSync(path)).digest('hex');

/**
 * A python batch as Python 2's cPickle wrote the official ones (protocol 2, str keys, numpy
 * _reconstruct + BUILD, BINSTRING pixels), with `batchLabel` free to pad the file to a chosen size.
 */
function python2Batch(pixels: Uint8Array, labels: Uint8Array, batchLabel: string): Buffer {
  const chunks: Buffer[] = [];
  const raw = (text: string) => chunks.push(Buffer.from(text, 'latin1'));
  const str = (value: string | Uint8Array) => {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value.buffer, value.byteOffset, value.length);
    if (bytes.length < 256) chunks.push(Buffer.from([0x55, bytes.length])); // SHORT_BINSTRING
    else chunks.push(Buffer.from([0x54, ...new Uint8Array(new Int32Array([bytes.length]).buffer)])); // BINSTRING
    chunks.push(bytes);
  };
  const int = (n: number) => chunks.push(n < 256 ? Buffer.from([0x4b, n]) : Buffer.from([0x4d, n & 255, n >> 8])); // BININT1/2
  raw('\x80\x02}('); // PROTO 2, EMPTY_DICT, MARK
  str('batch_label');
  str(batchLabel);
  str('labels');
  raw(']('); // EMPTY_LIST, MARK
  labels.forEach(int);
  raw('e'); // APPENDS
  str('data');
  raw('cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n');
  int(0);
  raw('\x85'); // TUPLE1: (0,)
  str('b');
  raw('\x87R('); // TUPLE3, REDUCE; MARK for the state (1, shape, dtype, False, data)
  int(1);
  int(labels.length);
  int(CIFAR_PIXELS);
  raw('\x86cnumpy\ndtype\n'); // TUPLE2 shape; the dtype class
  str('u1');
  int(0);
  int(1);
  raw('\x87R('); // dtype('u1', 0, 1); MARK for its state
  int(3);
  str('|');
  raw('NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff');
  int(0);
  raw('tb\x89'); // TUPLE, BUILD the dtype; False (C order)
  str(pixels);
  raw('tbu.'); // TUPLE, BUILD the array; SETITEMS; STOP
  return Buffer.concat(chunks);
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-layout-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh copy of a fixture directory under tmp. */
function copyOf(dir: string, name: string): string {
  const target = join(tmp, name);
  cpSync(dir, target, { recursive: true });
  return target;
}

describe('detectCifarLayout', () => {
  it.each(FIXTURES)('recognises the %s directory', (_, dir, format, extension, meta) => {
    const layout = detectCifarLayout(dir);
    expect(layout).toEqual({
      format,
      dir: resolve(dir),
      trainFiles: [join(resolve(dir), `data_batch_1${extension}`)],
      testFile: join(resolve(dir), `test_batch${extension}`),
      metaFile: join(resolve(dir), meta),
      others: [],
    });
  });

  it('in a folder of extracted cifar-10-batches-* prefers bin, then py, then mat, and says which', () => {
    const parent = join(tmp, 'downloads');
    mkdirSync(parent);
    cpSync(pyDir, join(parent, 'cifar-10-batches-py'), { recursive: true });
    cpSync(matDir, join(parent, 'cifar-10-batches-mat'), { recursive: true });
    const pyOverMat = detectCifarLayout(parent);
    expect([pyOverMat.format, pyOverMat.dir]).toEqual(['python', join(parent, 'cifar-10-batches-py')]);
    expect(pyOverMat.others).toEqual([{ format: 'matlab', dir: join(parent, 'cifar-10-batches-mat') }]);
    expect(pyOverMat.trainFiles).toEqual([join(parent, 'cifar-10-batches-py', 'data_batch_1')]);

    cpSync(tinyCifarDir, join(parent, 'cifar-10-batches-bin'), { recursive: true });
    const all = detectCifarLayout(parent);
    expect([all.format, all.dir]).toEqual(['binary', join(parent, 'cifar-10-batches-bin')]);
    expect(all.others.map((o) => o.format)).toEqual(['python', 'matlab']);
    expect(loadCifarDataset(parent).format).toBe('binary');
  });

  it('orders data_batch_<n> by n and takes no other names as training files', () => {
    const dir = copyOf(pyDir, 'numbered');
    for (const name of ['data_batch_10', 'data_batch_2', 'data_batch_1.p5', 'data_batch_x'])
      writeFileSync(join(dir, name), readFileSync(join(pyDir, 'data_batch_1')));
    expect(detectCifarLayout(dir).trainFiles).toEqual(['data_batch_1', 'data_batch_2', 'data_batch_10'].map((n) => join(dir, n)));
  });

  it('an unknown layout is one CifarFormatError naming the directory and what was looked for', () => {
    // fixtures/ holds cifar-10-tiny* directories, not cifar-10-batches-*.
    const error = thrown(() => detectCifarLayout(fixturesDir)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.op).toBe('detectCifarLayout');
    expect(error.file).toBe(resolve(fixturesDir));
    expect(error.message).toContain(resolve(fixturesDir));
    expect(error.message).toContain('unknown layout');
    for (const looked of ['data_batch_<n>.bin', 'data_batch_<n> (python)', 'data_batch_<n>.mat', 'cifar-10-batches-bin'])
      expect(error.message).toContain(looked);
    const missing = thrown(() => detectCifarLayout(join(tmp, 'nope'))) as TrainerArgumentError;
    expect(missing).toBeInstanceOf(TrainerArgumentError);
    expect(missing.message).toMatch(/argument 'dir' must be an existing directory, got '.*nope'/);
  });
});

const sharedDir = locateSharedCifar();
const sharedTitle = sharedDir ? `the shared subset (${sharedDir})` : 'the shared subset (skipped: ../shared/datasets/cifar-10-subset not found)';

describe.skipIf(!sharedDir)(sharedTitle, () => {
  it('is detected as binary, and loads as readCifarDirectory reads it, with sha256 as in its SHA256SUMS', () => {
    const layout = detectCifarLayout(sharedDir!);
    expect(layout.format).toBe('binary');
    expect(layout.trainFiles).toEqual([1, 2, 3, 4, 5].map((n) => join(sharedDir!, `data_batch_${n}.bin`)));
    expect(layout.testFile).toBe(join(sharedDir!, 'test_batch.bin'));
    expect(layout.metaFile).toBe(join(sharedDir!, 'batches.meta.txt'));

    const loaded = loadCifarDataset(sharedDir!);
    const reference = readCifarDirectory(sharedDir!);
    expect(loaded.classNames).toEqual(reference.classNames);
    expect(Buffer.from(loaded.train.pixels).equals(Buffer.from(reference.train.pixels))).toBe(true);
    expect(Buffer.from(loaded.train.labels).equals(Buffer.from(reference.train.labels))).toBe(true);
    expect(Buffer.from(loaded.test!.pixels).equals(Buffer.from(reference.test!.pixels))).toBe(true);
    const sums = new Map(readFileSync(join(sharedDir!, 'SHA256SUMS'), 'utf8').trim().split('\n').map((line) => line.split(/\s+/).reverse() as [string, string]));
    for (const file of loaded.files.filter((f) => f.role !== 'meta')) expect(file.sha256, file.path).toBe(sums.get(file.path.slice(sharedDir!.length + 1)));
  });
});

describe('loadCifarDataset', () => {
  it.each(FIXTURES)('%s: the same pixels, labels and class names as the binary fixture, byte for byte', (_, dir, format) => {
    const set = loadCifarDataset(dir);
    expect(set.format).toBe(format);
    expect(set.dir).toBe(resolve(dir));
    expect(set.classNames).toEqual(classNames);
    expect(set.train.count).toBe(40);
    expect(Buffer.from(set.train.pixels).equals(Buffer.from(binTrain.pixels))).toBe(true);
    expect(Buffer.from(set.train.labels).equals(Buffer.from(binTrain.labels))).toBe(true);
    expect(Buffer.from(set.test!.pixels).equals(Buffer.from(binTest.pixels))).toBe(true);
    expect(Buffer.from(set.test!.labels).equals(Buffer.from(binTest.labels))).toBe(true);
  });

  it.each(FIXTURES)('%s: every file listed with role, size, and sha256/md5 equal to node createHash over it', (_, dir, _format, extension, meta) => {
    const set = loadCifarDataset(dir);
    const paths = [meta, `data_batch_1${extension}`, `test_batch${extension}`].map((name) => join(resolve(dir), name));
    expect(set.files.map((f) => [f.role, f.path])).toEqual([['meta', paths[0]], ['train', paths[1]], ['test', paths[2]]]);
    for (const file of set.files) {
      expect(file.bytes, file.path).toBe(statSync(file.path).size);
      expect(file.sha256, file.path).toBe(sha256(file.path));
      expect(file.md5, file.path).toBe(md5(file.path));
      expect(file.official, file.path).toBe(false);
    }
    expect(hashCifarFiles(paths)).toEqual(set.files.map(({ role: _role, ...hash }) => hash));
  });

  it('concatenates training files in order and honours train/test options', () => {
    const dir = copyOf(matDir, 'two-batches');
    cpSync(join(matDir, 'test_batch.mat'), join(dir, 'data_batch_2.mat'));
    const both = loadCifarDataset(dir);
    expect(both.train.count).toBe(60);
    expect(both.train.sources).toEqual([join(dir, 'data_batch_1.mat'), join(dir, 'data_batch_2.mat')]);
    expect(Buffer.from(both.train.pixels.subarray(40 * CIFAR_PIXELS)).equals(Buffer.from(binTest.pixels))).toBe(true);
    expect(Array.from(both.train.labels.subarray(0, 40))).toEqual(Array.from(binTrain.labels));

    const some = loadCifarDataset(dir, { train: ['data_batch_2'], test: false });
    expect(some.train.count).toBe(20);
    expect(some.test).toBeNull();
    expect(some.files.map((f) => f.role)).toEqual(['meta', 'train']);

    const unknown = thrown(() => loadCifarDataset(dir, { train: ['data_batch_7'] })) as TrainerArgumentError;
    expect(unknown).toBeInstanceOf(TrainerArgumentError);
    expect([unknown.argument, unknown.actual]).toEqual(['options.train[0]', "'data_batch_7' (not found)"]);

    rmSync(join(dir, 'test_batch.mat'));
    expect(loadCifarDataset(dir).test).toBeNull();
    expect(() => loadCifarDataset(dir, { test: true })).toThrow(/options\.test' must be true only when .* has test_batch\.mat, got true \(no test file\)/);
    rmSync(join(dir, 'batches.meta.mat'));
    const noMeta = thrown(() => loadCifarDataset(dir)) as CifarFormatError;
    expect(noMeta).toBeInstanceOf(CifarFormatError);
    expect(noMeta.message).toMatch(/two-batches: meta file must be batches\.meta\.mat beside the batches/);
  });
});

describe('several binary files, decoded straight into one array', () => {
  /** A binary directory of 3 training files and a test file of `records` generated records each. */
  function largeBinaryDir(name: string, records: number): string {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'batches.meta.txt'), classNames.join('\n'));
    ['data_batch_1', 'data_batch_2', 'data_batch_3', 'test_batch'].forEach((file, k) => {
      const bytes = Buffer.alloc(records * (CIFAR_PIXELS + 1));
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * (2 * k + 5) + (i >> 11)) & 255;
      for (let r = 0; r < records; r++) bytes[r * (CIFAR_PIXELS + 1)] = (r + k) % 10;
      writeFileSync(join(dir, `${file}.bin`), bytes);
    });
    return dir;
  }

  it('checksums equal node createHash, and the training pixels equal each file read alone, in order', () => {
    // 4 files × 700 records, each file's records written with its own pattern.
    const dir = largeBinaryDir('large', 700);
    const set = loadCifarDataset(dir);
    for (const file of set.files) {
      expect(file.sha256, file.path).toBe(sha256(file.path));
      expect(file.md5, file.path).toBe(md5(file.path));
    }
    const alone = ['data_batch_1', 'data_batch_2', 'data_batch_3'].map((f) => readCifarBatch(join(dir, `${f}.bin`)));
    expect(set.train.count).toBe(2100);
    expect(Buffer.from(set.train.pixels).equals(Buffer.concat(alone.map((d) => d.pixels)))).toBe(true);
    expect(Buffer.from(set.train.labels).equals(Buffer.concat(alone.map((d) => d.labels)))).toBe(true);
    expect(Buffer.from(set.test!.pixels).equals(Buffer.from(readCifarBatch(join(dir, 'test_batch.bin')).pixels))).toBe(true);
  });

  it('a bad label in the second training file is named with that file and record', () => {
    const dir = largeBinaryDir('large-bad', 700);
    const path = join(dir, 'data_batch_2.bin');
    const bytes = readFileSync(path);
    bytes[(CIFAR_PIXELS + 1) * 123] = 11;
    writeFileSync(path, bytes);
    const error = thrown(() => loadCifarDataset(dir)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.message).toMatch(/data_batch_2\.bin.*record 123: label byte must be in 0\.\.9, got 11/);
  });
});

describe('bad files through loadCifarDataset: one CifarFormatError naming the file and the problem', () => {
  it.each([
    ['binary: size not a multiple of 3073', tinyCifarDir, 'data_batch_1.bin', (p: string) => truncateSync(p, 3073 * 40 - 100), /multiple of 3073.*39 whole records \+ 2973 bytes/],
    ['binary: a label > 9', tinyCifarDir, 'test_batch.bin', (p: string) => {
      const bytes = readFileSync(p);
      bytes[3073 * 5] = 10;
      writeFileSync(p, bytes);
    }, /record 5: label byte must be in 0\.\.9, got 10/],
    ['binary: batches.meta.txt without 10 names', tinyCifarDir, 'batches.meta.txt', (p: string) => writeFileSync(p, 'cat\ndog\n'), /class names must be 10 non-empty lines, got 2 lines/],
    ['python: a truncated pickle', pyDir, 'data_batch_1', (p: string) => truncateSync(p, 5000), /truncated or corrupt pickle/],
    ['python: not a dict with data', pyDir, 'test_batch', (p: string) => writeFileSync(p, Buffer.from('\x80\x02}q\x00U\x06labelsq\x01]q\x02s.', 'latin1')), /a dict with 'data'.*got keys 'labels'/],
    ['matlab: no data variable', matDir, 'test_batch.mat', (p: string) => {
      const bytes = readFileSync(p);
      bytes.write('dxta', bytes.indexOf('data', 128, 'latin1'), 'latin1');
      writeFileSync(p, bytes);
    }, /MAT variables must be a variable 'data'/],
    ['matlab: a v7.3 (HDF5) file', matDir, 'data_batch_1.mat', (p: string) => {
      const bytes = Buffer.alloc(2048);
      bytes.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .', 0, 'latin1');
      bytes.write('\x00\x02IM', 124, 'latin1');
      bytes.write('\x89HDF\r\n\x1a\n', 512, 'latin1');
      writeFileSync(p, bytes);
    }, /MATLAB v7\.3 \(HDF5\) files are not supported; save with -v7 or -v6/],
  ])('%s', (title, source, file, corrupt, message) => {
    const dir = copyOf(source, title.replace(/\W+/g, '-'));
    corrupt(join(dir, file));
    const error = thrown(() => loadCifarDataset(dir)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.file).toBe(join(dir, file));
    expect(error.message).toContain(join(dir, file));
    expect(error.message).toMatch(message);
  });
});

describe('official md5s', () => {
  const official = OFFICIAL_CIFAR_PYTHON_FILES.data_batch_1;

  it('a python file of the official size with other content is rejected, naming expected and actual md5', () => {
    const dir = join(tmp, 'fake-official');
    mkdirSync(dir);
    cpSync(join(pyDir, 'batches.meta'), join(dir, 'batches.meta'));
    const pixels = new Uint8Array(10000 * CIFAR_PIXELS);
    const labels = new Uint8Array(10000);
    const unpadded = python2Batch(pixels, labels, '').length;
    // Pad through batch_label (a BINSTRING: 5 header bytes instead of SHORT_BINSTRING's 2) to the official size.
    const file = python2Batch(pixels, labels, 'x'.repeat(official.bytes - unpadded - 3));
    expect(file.length).toBe(official.bytes);
    writeFileSync(join(dir, 'data_batch_1'), file);
    const actual = md5(join(dir, 'data_batch_1'));

    const error = thrown(() => loadCifarDataset(dir)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.file).toBe(join(dir, 'data_batch_1'));
    expect(error.argument).toBe('md5');
    expect(error.message).toContain(official.md5);
    expect(error.message).toContain(actual);
    expect(error.message).toMatch(/corrupted download/);

    // The file itself is a valid batch: accepted when the caller says it is a modified copy.
    const accepted = loadCifarDataset(dir, { verifyOfficial: false });
    expect(accepted.train.count).toBe(10000);
    expect(accepted.train.pixels.every((p) => p === 0)).toBe(true);
    expect(accepted.files[1]).toMatchObject({ md5: actual, official: false, bytes: official.bytes });
    // hashCifarFiles reads it in chunks and gets the same checksums.
    expect(hashCifarFiles([join(dir, 'data_batch_1')])[0]).toEqual({ path: join(dir, 'data_batch_1'), bytes: official.bytes, sha256: sha256(join(dir, 'data_batch_1')), md5: actual, official: false });
  });

  it('a re-saved batch of another size is not held to the official md5 unless verifyOfficial is true', () => {
    const dir = join(tmp, 'resaved');
    mkdirSync(dir);
    cpSync(join(pyDir, 'batches.meta'), join(dir, 'batches.meta'));
    writeFileSync(join(dir, 'data_batch_1'), python2Batch(new Uint8Array(10000 * CIFAR_PIXELS), new Uint8Array(10000), 'a re-save'));
    expect(loadCifarDataset(dir).train.count).toBe(10000);
    const strict = thrown(() => loadCifarDataset(dir, { verifyOfficial: true })) as CifarFormatError;
    expect(strict).toBeInstanceOf(CifarFormatError);
    // batches.meta is read first; the fixture's is not the official one.
    expect(strict.file).toBe(join(dir, 'batches.meta'));
    expect(strict.message).toContain(OFFICIAL_CIFAR_PYTHON_FILES['batches.meta'].md5);
    expect(strict.message).toContain(md5(join(dir, 'batches.meta')));
  });

  it('verifyOfficial: true wants 10000 records per binary and MATLAB batch file', () => {
    for (const [dir, file] of [[tinyCifarDir, 'data_batch_1.bin'], [matDir, 'data_batch_1.mat']]) {
      const error = thrown(() => loadCifarDataset(dir, { verifyOfficial: true })) as CifarFormatError;
      expect(error).toBeInstanceOf(CifarFormatError);
      expect(error.file).toBe(join(resolve(dir), file));
      expect(error.message).toMatch(/records must be 10000 \(an official batch file; verifyOfficial: true\), got 40/);
    }
  });

  it('hashCifarFiles names a missing file and rejects a non-array', () => {
    const missing = thrown(() => hashCifarFiles([join(tmp, 'missing')])) as TrainerArgumentError;
    expect(missing).toBeInstanceOf(TrainerArgumentError);
    expect([missing.argument, missing.actual]).toEqual(['paths[0]', `'${join(tmp, 'missing')}' (ENOENT)`]);
    expect(() => hashCifarFiles('a' as unknown as string[])).toThrow(/argument 'paths' must be an array of file paths/);
  });
});
