import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CIFAR_PIXELS,
  CIFAR_RECORD_BYTES,
  computeFeatureStats,
  decodeCifarBatches,
  firstFeatures,
  locateSharedCifar,
  parseCifarBatch,
  preprocessCifar,
  readCifarBatch,
  readCifarBatches,
  readCifarClassNames,
  readCifarDirectory,
  sliceRecords,
  standardizeFeatures,
  type CifarData,
  type FeatureMatrix,
} from './cifar.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';
import { fixturesDir, tinyCifarDir } from './test-support/paths.js';
import { thrown } from './test-support/thrown.js';

const CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** Records whose pixel j of record r is (31·r + j) mod 256, so any misplaced byte shows. */
function batchBytes(labels: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(labels.length * CIFAR_RECORD_BYTES);
  labels.forEach((label, r) => {
    bytes[r * CIFAR_RECORD_BYTES] = label;
    for (let j = 0; j < CIFAR_PIXELS; j++) bytes[r * CIFAR_RECORD_BYTES + 1 + j] = (31 * r + j) % 256;
  });
  return bytes;
}

/** CifarData with the given first features (the rest 0). */
function dataWithFeatures(rows: readonly (readonly number[])[]): CifarData {
  const pixels = new Uint8Array(rows.length * CIFAR_PIXELS);
  rows.forEach((row, i) => pixels.set(row, i * CIFAR_PIXELS));
  return { count: rows.length, pixels, labels: new Uint8Array(rows.length), sources: ['<test>'] };
}


let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-cifar-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('decodeCifarBatches', () => {
  const batches = [batchBytes([3, 0]), batchBytes([9]), batchBytes([5, 6, 7])];
  const named = (sizes: readonly number[]) => sizes.map((bytes, i) => ({ name: `b${i}.bin`, bytes }));

  it('decodes the batches in order into one array, asking for each batch once, in turn', () => {
    // Arrange
    const asked: number[] = [];

    // Act
    const data = decodeCifarBatches(named(batches.map((b) => b.length)), (i) => (asked.push(i), batches[i]));

    // Assert: the same records as each batch parsed alone, one after another.
    const alone = batches.map((b) => parseCifarBatch(b));
    expect(asked).toEqual([0, 1, 2]);
    expect(data.count).toBe(6);
    expect(Array.from(data.labels)).toEqual([3, 0, 9, 5, 6, 7]);
    expect(Array.from(data.pixels)).toEqual(alone.flatMap((d) => Array.from(d.pixels)));
    expect(data.pixels.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(data.sources).toEqual(['b0.bin', 'b1.bin', 'b2.bin']);
  });

  it('asks for a batch only when its turn comes: a bad label in the first stops before the second is asked for', () => {
    // Arrange
    const bad = batchBytes([1, 12]);
    const asked: number[] = [];

    // Act
    const error = thrown(() => decodeCifarBatches(named([bad.length, batches[1].length]), (i) => (asked.push(i), i === 0 ? bad : batches[1]))) as CifarFormatError;

    // Assert
    expect(asked).toEqual([0]);
    expect([error.op, error.file, error.record, error.argument]).toEqual(['decodeCifarBatches', 'b0.bin', 1, 'label byte']);
  });

  it('checks every announced size before asking for any bytes, and reports bytes of another length than announced', () => {
    // Arrange
    const asked: number[] = [];
    const ask = (i: number) => (asked.push(i), batches[i]);

    // Act
    const badSize = thrown(() => decodeCifarBatches(named([batches[0].length, CIFAR_RECORD_BYTES + 2]), ask)) as CifarFormatError;
    const changed = thrown(() => decodeCifarBatches(named([batches[0].length, 2 * CIFAR_RECORD_BYTES]), ask)) as CifarFormatError;

    // Assert: the first asked for nothing; the second named the batch whose bytes differ.
    expect([badSize.file, badSize.argument, badSize.actual]).toEqual(['b1.bin', 'byte length', '3075 bytes (1 whole records + 2 bytes)']);
    expect(asked).toEqual([0, 1]);
    expect([changed.op, changed.file, changed.argument, changed.expected, changed.actual]).toEqual([
      'decodeCifarBatches', 'b1.bin', 'byte length', '6146 bytes (its size when reading began)', '3073 bytes',
    ]);
  });

  it('an empty batch is a format error naming it, as an empty file is', () => {
    const error = thrown(() => decodeCifarBatches(named([0]), () => new Uint8Array(0))) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect([error.file, error.argument, error.actual]).toEqual(['b0.bin', 'byte length', '0 bytes (0 whole records + 0 bytes)']);
  });

  it('rejects bad arguments, naming them', () => {
    const cases: Array<[() => unknown, string, string]> = [
      [() => decodeCifarBatches([], () => batches[0]), 'batches', 'a non-empty array of { name, bytes }'],
      [() => decodeCifarBatches([{ name: 'x', bytes: -1 }], () => batches[0]), 'batches[0]', '{ name: a string, bytes: an integer >= 0 }'],
      [() => decodeCifarBatches([{ name: 3, bytes: 3073 }] as never, () => batches[0]), 'batches[0]', '{ name: a string, bytes: an integer >= 0 }'],
      [() => decodeCifarBatches(named([3073]), null as never), 'bytesOf', 'a function (i) => Uint8Array'],
      [() => decodeCifarBatches(named([3073]), () => [1] as never), 'bytesOf(0)', 'a Uint8Array or Buffer'],
    ];
    for (const [call, argument, expected] of cases) {
      const error = thrown(call) as TrainerArgumentError;
      expect(error, argument).toBeInstanceOf(TrainerArgumentError);
      expect(error).not.toBeInstanceOf(CifarFormatError);
      expect([error.op, error.argument, error.expected]).toEqual(['decodeCifarBatches', argument, expected]);
    }
  });
});

describe('parseCifarBatch', () => {
  it('splits labels from pixels record by record', () => {
    const data = parseCifarBatch(batchBytes([3, 0, 9]), 'three.bin');
    expect(data.count).toBe(3);
    expect(Array.from(data.labels)).toEqual([3, 0, 9]);
    expect(data.pixels).toBeInstanceOf(Uint8Array);
    expect(data.pixels.length).toBe(3 * CIFAR_PIXELS);
    for (const r of [0, 1, 2])
      for (const j of [0, 1, 1023, 1024, 2048, 3071]) expect(data.pixels[r * CIFAR_PIXELS + j]).toBe((31 * r + j) % 256);
    expect(data.sources).toEqual(['three.bin']);
  });

  it('reads a view with a byte offset (a Buffer slice) from its own start', () => {
    const padded = new Uint8Array(5 + 2 * CIFAR_RECORD_BYTES);
    padded.set(batchBytes([7, 2]), 5);
    const data = parseCifarBatch(Buffer.from(padded.buffer, 5, 2 * CIFAR_RECORD_BYTES));
    expect(Array.from(data.labels)).toEqual([7, 2]);
    expect(data.pixels[CIFAR_PIXELS + 10]).toBe(41);
  });

  it('copies the pixels: the input buffer is not kept', () => {
    const bytes = batchBytes([1]);
    const data = parseCifarBatch(bytes);
    bytes[1] = 200;
    expect(data.pixels[0]).toBe(0);
  });

  it('rejects a length that is not a whole number of records, naming file and sizes', () => {
    const error = thrown(() => parseCifarBatch(new Uint8Array(CIFAR_RECORD_BYTES + 1), 'odd.bin')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error).toBeInstanceOf(TrainerArgumentError);
    expect(error.op).toBe('parseCifarBatch');
    expect(error.file).toBe('odd.bin');
    expect(error.record).toBeNull();
    expect(error.expected).toContain('multiple of 3073');
    expect(error.actual).toBe('3074 bytes (1 whole records + 1 bytes)');
    expect(error.message).toContain('odd.bin');
  });

  it('rejects an empty batch', () => {
    expect(() => parseCifarBatch(new Uint8Array(0))).toThrow(/0 bytes/);
  });

  it('rejects a label outside 0-9, naming file and record', () => {
    const bytes = batchBytes([1, 2, 3]);
    bytes[2 * CIFAR_RECORD_BYTES] = 10;
    const error = thrown(() => parseCifarBatch(bytes, 'bad-label.bin')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.file).toBe('bad-label.bin');
    expect(error.record).toBe(2);
    expect(error.argument).toBe('label byte');
    expect(error.actual).toBe(`10 (byte offset ${2 * CIFAR_RECORD_BYTES})`);
    expect(error.message).toMatch(/bad-label\.bin, record 2: label byte must be in 0\.\.9, got 10/);
  });

  it('rejects a non-byte input', () => {
    const error = thrown(() => parseCifarBatch([1, 2, 3] as unknown as Uint8Array)) as TrainerArgumentError;
    expect(error).toBeInstanceOf(TrainerArgumentError);
    expect(error.argument).toBe('bytes');
    expect(error.actual).toBe('array(3)');
  });
});

describe('reading files', () => {
  it('readCifarBatch reads a file and names it in errors', () => {
    const path = join(tmp, 'one.bin');
    writeFileSync(path, batchBytes([4, 5]));
    const data = readCifarBatch(path);
    expect(Array.from(data.labels)).toEqual([4, 5]);
    expect(data.pixels[CIFAR_PIXELS + 3]).toBe(34);
    expect(data.sources).toEqual([path]);

    const truncated = join(tmp, 'truncated.bin');
    writeFileSync(truncated, batchBytes([4, 5]).subarray(0, CIFAR_RECORD_BYTES + 100));
    const error = thrown(() => readCifarBatch(truncated)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.file).toBe(truncated);
    expect(error.op).toBe('readCifarBatch');

    const missing = thrown(() => readCifarBatch(join(tmp, 'missing.bin'))) as TrainerArgumentError;
    expect(missing).toBeInstanceOf(TrainerArgumentError);
    expect(missing.argument).toBe('path');
    expect(missing.actual).toContain('missing.bin');
    expect(missing.actual).toContain('ENOENT');
  });

  it('readCifarBatches concatenates files in order, checking every file before reading', () => {
    const a = join(tmp, 'a.bin');
    const b = join(tmp, 'b.bin');
    writeFileSync(a, batchBytes([1, 2]));
    writeFileSync(b, batchBytes([8]));
    const data = readCifarBatches([a, b]);
    expect(data.count).toBe(3);
    expect(Array.from(data.labels)).toEqual([1, 2, 8]);
    // b's record 0 lands at record 2.
    expect(data.pixels[2 * CIFAR_PIXELS + 5]).toBe(5);
    expect(data.pixels[1 * CIFAR_PIXELS + 5]).toBe(36);
    expect(data.sources).toEqual([a, b]);

    const bad = join(tmp, 'bad.bin');
    writeFileSync(bad, new Uint8Array(10));
    const error = thrown(() => readCifarBatches([a, bad])) as CifarFormatError;
    expect(error.file).toBe(bad);
    expect(() => readCifarBatches([])).toThrow(TrainerArgumentError);
  });

  it('readCifarClassNames wants exactly ten names', () => {
    const path = join(tmp, 'meta9.txt');
    writeFileSync(path, CLASS_NAMES.slice(0, 9).join('\n'));
    const error = thrown(() => readCifarClassNames(path)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.file).toBe(path);
    expect(error.actual).toBe('9 lines');
    const crlf = join(tmp, 'meta-crlf.txt');
    writeFileSync(crlf, `${CLASS_NAMES.join('\r\n')}\r\n\r\n`);
    expect(readCifarClassNames(crlf)).toEqual(CLASS_NAMES);
  });

  it('readCifarDirectory reads the tiny fixture', () => {
    const set = readCifarDirectory(tinyCifarDir);
    expect(set.dir).toBe(resolve(tinyCifarDir));
    expect(set.classNames).toEqual(CLASS_NAMES);
    expect(set.train.count).toBe(40);
    expect(set.test?.count).toBe(20);
    expect(set.train.sources).toEqual([join(tinyCifarDir, 'data_batch_1.bin')]);
    const perClass = new Array(10).fill(0);
    for (const label of set.train.labels) perClass[label]++;
    expect(perClass).toEqual(new Array(10).fill(4));
    // The pixels are the file's bytes after each label byte.
    const raw = readFileSync(join(tinyCifarDir, 'data_batch_1.bin'));
    expect(Buffer.from(set.train.pixels.subarray(39 * CIFAR_PIXELS)).equals(raw.subarray(39 * CIFAR_RECORD_BYTES + 1))).toBe(true);
  });

  it('readCifarDirectory finds data_batch_<n>.bin by number, and honours explicit names', () => {
    const dir = join(tmp, 'numbered');
    mkdirSync(dir);
    writeFileSync(join(dir, 'batches.meta.txt'), CLASS_NAMES.join('\n'));
    writeFileSync(join(dir, 'data_batch_10.bin'), batchBytes([0]));
    writeFileSync(join(dir, 'data_batch_2.bin'), batchBytes([2]));
    writeFileSync(join(dir, 'data_batch_1.bin'), batchBytes([1]));
    writeFileSync(join(dir, 'data_batch_x.bin'), batchBytes([5]));
    const all = readCifarDirectory(dir);
    expect(Array.from(all.train.labels)).toEqual([1, 2, 0]);
    expect(all.test).toBeNull();

    const some = readCifarDirectory(dir, { train: ['data_batch_2', 'data_batch_x.bin'], test: 'data_batch_1' });
    expect(Array.from(some.train.labels)).toEqual([2, 5]);
    expect(Array.from(some.test!.labels)).toEqual([1]);

    const missing = thrown(() => readCifarDirectory(dir, { test: 'test_batch' })) as TrainerArgumentError;
    expect(missing.op).toBe('readCifarDirectory');
    expect(missing.argument).toBe('options.test');
    expect(missing.actual).toContain('test_batch');
    expect(() => readCifarDirectory(join(tmp, 'nope'))).toThrow(/argument 'dir' must be an existing directory/);
    expect(() => readCifarDirectory(tmp)).toThrow(/data_batch_<n>\.bin/);
  });
});

describe('preprocessing', () => {
  // Feature 0 takes 0, 51, 255 (0, 0.2, 1 after scaling); feature 1 is constant 7; feature 2 is 255, 0, 0.
  const train = dataWithFeatures([
    [0, 7, 255],
    [51, 7, 0],
    [255, 7, 0],
  ]);

  it('computes the training mean and population std of the scaled features', () => {
    const stats = computeFeatureStats(train, { dims: 3 });
    expect(stats.dims).toBe(3);
    expect(stats.count).toBe(3);
    expect(stats.mean[0]).toBeCloseTo(0.4, 15);
    expect(stats.std[0]).toBeCloseTo(Math.sqrt(0.56 / 3), 15);
    expect(stats.mean[1]).toBe(7 / 255);
    expect(stats.std[1]).toBe(0);
    expect(stats.mean[2]).toBeCloseTo(1 / 3, 15);
    expect(stats.std[2]).toBeCloseTo(Math.sqrt(2) / 3, 15);
  });

  it('standardizes with the training stats, leaving a zero-std feature centered', () => {
    const stats = computeFeatureStats(train, { dims: 3 });
    const x = standardizeFeatures(train, stats);
    expect(x.data).toBeInstanceOf(Float32Array);
    expect([x.rows, x.cols]).toEqual([3, 3]);
    const s0 = Math.sqrt(0.56 / 3);
    expect(Array.from(x.data)).toEqual(
      [
        [-0.4 / s0, 0, (2 / 3) / (Math.sqrt(2) / 3)],
        [-0.2 / s0, 0, (-1 / 3) / (Math.sqrt(2) / 3)],
        [0.6 / s0, 0, (-1 / 3) / (Math.sqrt(2) / 3)],
      ].flat().map((v) => expect.closeTo(Math.fround(v), 6)),
    );
    // Other data gets the training stats, not its own: the zero-std feature is only centered.
    const test = standardizeFeatures(dataWithFeatures([[102, 17, 255]]), stats);
    expect(test.data[0]).toBeCloseTo(Math.fround(0 / s0), 6);
    expect(test.data[1]).toBeCloseTo(Math.fround(10 / 255), 7);
    expect(test.data[2]).toBeCloseTo(Math.fround((2 / 3) / (Math.sqrt(2) / 3)), 6);
  });

  it('matches a direct per-feature computation on the fixture, and gives mean 0 / std 1 on training data', () => {
    const { train: data } = readCifarDirectory(tinyCifarDir);
    const stats = computeFeatureStats(data);
    for (const j of [0, 19, 1024, 3071]) {
      const column = Array.from({ length: data.count }, (_, i) => data.pixels[i * CIFAR_PIXELS + j] / 255);
      const mean = column.reduce((a, b) => a + b, 0) / column.length;
      const std = Math.sqrt(column.reduce((a, v) => a + (v - mean) ** 2, 0) / column.length);
      expect(stats.mean[j]).toBeCloseTo(mean, 14);
      expect(stats.std[j]).toBeCloseTo(std, 14);
    }
    const x = standardizeFeatures(data, stats);
    for (const j of [0, 7, 2000, 3071]) {
      let sum = 0;
      let squares = 0;
      for (let i = 0; i < x.rows; i++) sum += x.data[i * x.cols + j];
      for (let i = 0; i < x.rows; i++) squares += (x.data[i * x.cols + j] - sum / x.rows) ** 2;
      expect(sum / x.rows).toBeCloseTo(0, 5);
      expect(Math.sqrt(squares / x.rows)).toBeCloseTo(1, 5);
    }
  });

  it('statistics and features for the first d dims equal the first d of the full ones', () => {
    const { train: data, test } = readCifarDirectory(tinyCifarDir);
    const full = preprocessCifar(data, [test!]);
    const small = preprocessCifar(data, [test!], { dims: 20 });
    expect(small.stats.mean).toEqual(full.stats.mean.subarray(0, 20));
    expect(small.stats.std).toEqual(full.stats.std.subarray(0, 20));
    expect(small.train).toEqual(firstFeatures(full.train, 20));
    expect(small.others[0]).toEqual(firstFeatures(full.others[0], 20));
    expect([small.others[0].rows, small.others[0].cols]).toEqual([20, 20]);
  });

  it('firstFeatures keeps the first d columns of every row', () => {
    const m: FeatureMatrix = { rows: 2, cols: 3, data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    expect(firstFeatures(m, 2)).toEqual({ rows: 2, cols: 2, data: Float32Array.from([1, 2, 4, 5]) });
    expect(firstFeatures(m, 3).data).not.toBe(m.data);
    expect(() => firstFeatures(m, 4)).toThrow(/firstFeatures: argument 'd' must be an integer in \[1, 3\], got 4/);
  });

  it('sliceRecords returns views, not copies', () => {
    const data = parseCifarBatch(batchBytes([1, 2, 3, 4]));
    const part = sliceRecords(data, 1, 3);
    expect(part.count).toBe(2);
    expect(Array.from(part.labels)).toEqual([2, 3]);
    expect(part.pixels.buffer).toBe(data.pixels.buffer);
    expect(part.pixels[0]).toBe(31);
    expect(() => sliceRecords(data, 3, 2)).toThrow(TrainerArgumentError);
  });

  it('rejects bad dims, stats and data with typed errors', () => {
    const dims = thrown(() => computeFeatureStats(train, { dims: 3073 })) as TrainerArgumentError;
    expect([dims.op, dims.argument, dims.actual]).toEqual(['computeFeatureStats', 'dims', '3073']);
    expect(() => computeFeatureStats(train, { dims: 0 })).toThrow(TrainerArgumentError);
    const stats = computeFeatureStats(train, { dims: 3 });
    const badStats = thrown(() => standardizeFeatures(train, { ...stats, std: new Float64Array(2) })) as TrainerArgumentError;
    expect(badStats.argument).toBe('stats.std');
    const badData = thrown(() => computeFeatureStats({ ...train, count: 4 })) as TrainerArgumentError;
    expect(badData.argument).toBe('train.pixels');
    expect(() => computeFeatureStats(sliceRecords(train, 0, 0))).toThrow(/at least 1 record/);
  });

  it('the fixture classes are learnable from the first 20 standardized features (nearest class mean)', () => {
    const { train: data, test } = readCifarDirectory(tinyCifarDir);
    const { train: x, others } = preprocessCifar(data, [test!], { dims: 20 });
    const centroids = Array.from({ length: 10 }, () => new Float64Array(20));
    for (let i = 0; i < x.rows; i++) for (let j = 0; j < 20; j++) centroids[data.labels[i]][j] += x.data[i * 20 + j] / 4;
    const predict = (m: FeatureMatrix, i: number) => {
      const distance = (c: Float64Array) => c.reduce((acc, v, j) => acc + (m.data[i * 20 + j] - v) ** 2, 0);
      return centroids.reduce((best, c, k) => (distance(c) < distance(centroids[best]) ? k : best), 0);
    };
    let correct = 0;
    for (let i = 0; i < test!.count; i++) if (predict(others[0], i) === test!.labels[i]) correct++;
    expect(correct / test!.count).toBeGreaterThanOrEqual(0.7); // 0.9 when written; chance is 0.1
  });
});

describe('the committed fixture', () => {
  it('is what generate-cifar-fixture.mjs generates, byte for byte, with matching SHA256SUMS', async () => {
    const generator = await import(pathToFileURL(join(fixturesDir, 'generate-cifar-fixture.mjs')).href);
    const files = generator.generateCifarFixture() as Record<string, Uint8Array>;
    expect(Object.keys(files).sort()).toEqual(['SHA256SUMS', 'batches.meta.txt', 'data_batch_1.bin', 'test_batch.bin']);
    for (const [name, bytes] of Object.entries(files)) expect(Buffer.from(bytes).equals(readFileSync(join(tinyCifarDir, name))), name).toBe(true);
    for (const line of readFileSync(join(tinyCifarDir, 'SHA256SUMS'), 'utf8').trim().split('\n')) {
      const [sum, name] = line.split(/\s+/);
      expect(createHash('sha256').update(readFileSync(join(tinyCifarDir, name))).digest('hex'), name).toBe(sum);
    }
  });
});

describe('locateSharedCifar', () => {
  const nowhere = resolve('/nonexistent-bnmlp-test/a/b');

  it('finds shared/datasets/cifar-10-subset beside the repository, from the cwd or the module directory', () => {
    const shared = join(tmp, 'work', 'shared', 'datasets', 'cifar-10-subset');
    mkdirSync(shared, { recursive: true });
    writeFileSync(join(shared, 'data_batch_1.bin'), batchBytes([0]));
    const inside = join(tmp, 'work', 'main', 'packages', 'trainer');
    mkdirSync(inside, { recursive: true });
    expect(locateSharedCifar({ env: {}, cwd: inside, moduleDir: nowhere })).toBe(shared);
    expect(locateSharedCifar({ env: {}, cwd: nowhere, moduleDir: join(inside, 'dist') })).toBe(shared);
    // A directory of that name without data_batch_1.bin is not a data set.
    const decoy = join(tmp, 'work', 'main', 'shared', 'datasets', 'cifar-10-subset');
    mkdirSync(decoy, { recursive: true });
    expect(locateSharedCifar({ env: {}, cwd: inside, moduleDir: nowhere })).toBe(shared);
  });

  it.skipIf(existsSync('/shared/datasets/cifar-10-subset/data_batch_1.bin'))('returns null when there is none', () => {
    expect(locateSharedCifar({ env: {}, cwd: nowhere, moduleDir: nowhere })).toBeNull();
  });

  it('honours BNMLP_CIFAR_DIR, and rejects one that is not a CIFAR directory', () => {
    expect(locateSharedCifar({ env: { BNMLP_CIFAR_DIR: tinyCifarDir }, cwd: nowhere, moduleDir: nowhere })).toBe(resolve(tinyCifarDir));
    expect(locateSharedCifar({ env: { BNMLP_CIFAR_DIR: '' }, cwd: nowhere, moduleDir: nowhere })).toBeNull();
    const error = thrown(() => locateSharedCifar({ env: { BNMLP_CIFAR_DIR: tmp }, cwd: nowhere, moduleDir: nowhere })) as TrainerArgumentError;
    expect(error).toBeInstanceOf(TrainerArgumentError);
    expect(error.argument).toBe('BNMLP_CIFAR_DIR');
    expect(error.actual).toContain(tmp);
  });
});

const sharedDir = locateSharedCifar();

describe.skipIf(!sharedDir)('the shared CIFAR-10 subset', () => {
  it('holds 5 × 1000 training and 1000 test records with labels 0-9 and the CIFAR-10 class names', () => {
    const set = readCifarDirectory(sharedDir!);
    expect(set.classNames).toEqual(CLASS_NAMES);
    expect(set.train.sources.map((s) => s.slice(sharedDir!.length + 1))).toEqual([1, 2, 3, 4, 5].map((n) => `data_batch_${n}.bin`));
    expect(set.train.count).toBe(5000);
    expect(set.test!.count).toBe(1000);
    const perClass = new Array(10).fill(0);
    for (const label of set.train.labels) perClass[label]++;
    expect(perClass.every((n) => n > 300)).toBe(true);
    expect(Math.max(...set.test!.labels)).toBeLessThanOrEqual(9);
    const stats = computeFeatureStats(set.train);
    expect(Math.min(...stats.std)).toBeGreaterThan(0.1);
    expect(Math.min(...stats.mean)).toBeGreaterThan(0.2);
    expect(Math.max(...stats.mean)).toBeLessThan(0.7);
  });

  it('matches its SHA256SUMS', () => {
    for (const line of readFileSync(join(sharedDir!, 'SHA256SUMS'), 'utf8').trim().split('\n')) {
      const [sum, name] = line.split(/\s+/);
      expect(createHash('sha256').update(readFileSync(join(sharedDir!, name))).digest('hex'), name).toBe(sum);
    }
  });
});
