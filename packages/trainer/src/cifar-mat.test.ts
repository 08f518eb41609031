import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseCifarMat, parseCifarMatMeta, parseMatFile, readCifarMatBatch, readCifarMatClassNames } from './cifar-mat.js';
import { CIFAR_PIXELS, readCifarBatch, readCifarClassNames } from './cifar.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';
import { fixturesDir, tinyCifarDir } from './test-support/paths.js';
import { thrown } from './test-support/thrown.js';

const matDir = join(fixturesDir, 'cifar-10-tiny-mat');
const binTrain = readCifarBatch(join(tinyCifarDir, 'data_batch_1.bin'));
const binTest = readCifarBatch(join(tinyCifarDir, 'test_batch.bin'));


/*
A minimal MAT-file (Level 5) writer for the cases scipy does not write: other classes, the other
byte order, bad contents. Elements use the plain (not small) format, which readers must accept too.
*/
const MI = { INT8: 1, UINT8: 2, UINT16: 4, INT32: 5, UINT32: 6, DOUBLE: 9, MATRIX: 14, COMPRESSED: 15, UTF8: 16 };
const MX = { CELL: 1, STRUCT: 2, CHAR: 4, DOUBLE: 6, UINT8: 9 };

function element(type: number, data: Uint8Array, little: boolean): Buffer {
  const tag = Buffer.alloc(8);
  new DataView(tag.buffer).setUint32(0, type, little);
  new DataView(tag.buffer).setUint32(4, data.length, little);
  // Compressed elements are not padded (as MATLAB and scipy write them); the rest are, to 8 bytes.
  return Buffer.concat([tag, data, Buffer.alloc(type === MI.COMPRESSED ? 0 : (8 - (data.length % 8)) % 8)]);
}

function numbers(values: readonly number[], bytes: number, write: (view: DataView, offset: number, value: number) => void): Uint8Array {
  const out = new Uint8Array(values.length * bytes);
  const view = new DataView(out.buffer);
  values.forEach((value, i) => write(view, i * bytes, value));
  return out;
}

interface MatrixSpec {
  readonly name: string;
  readonly mxClass: number;
  readonly dims: readonly number[];
  /** The real part's element (type and bytes), or the cells. */
  readonly real?: { readonly type: number; readonly data: Uint8Array };
  readonly cells?: readonly MatrixSpec[];
  readonly complex?: boolean;
}

function matrix(spec: MatrixSpec, little = true): Buffer {
  const flags = numbers([spec.mxClass | (spec.complex ? 0x800 : 0), 0], 4, (v, o, x) => v.setUint32(o, x, little));
  const parts = [
    element(MI.UINT32, flags, little),
    element(MI.INT32, numbers(spec.dims, 4, (v, o, x) => v.setInt32(o, x, little)), little),
    element(MI.INT8, Buffer.from(spec.name, 'latin1'), little),
    ...(spec.real ? [element(spec.real.type, spec.real.data, little)] : []),
    ...(spec.cells ?? []).map((cell) => matrix(cell, little)),
  ];
  return element(MI.MATRIX, Buffer.concat(parts), little);
}

function matFile(elements: readonly Buffer[], little = true, text = 'MATLAB 5.0 MAT-file, written by cifar-mat.test.ts'): Buffer {
  const header = Buffer.alloc(128, 0x20);
  header.write(text, 0, 'latin1');
  new DataView(header.buffer).setUint16(124, 0x0100, little);
  header.write(little ? 'IM' : 'MI', 126, 'latin1');
  return Buffer.concat([header, ...elements]);
}

const doubles = (values: readonly number[], little = true) => ({ type: MI.DOUBLE, data: numbers(values, 8, (v, o, x) => v.setFloat64(o, x, little)) });
const chars = (text: string) => ({ type: MI.UTF8, data: Buffer.from(text, 'utf8') });

/** Record i, feature j of the synthetic batches: (31·i + j) mod 256, as in cifar.test.ts. */
const pixel = (i: number, j: number) => (31 * i + j) % 256;

/** `rows` records as MATLAB stores them: data rows × 3072 column-major, as doubles (or uint8). */
function cifarMat(rows: number, labels: readonly number[], options: { little?: boolean; asDouble?: boolean; dataName?: string } = {}): Buffer {
  const little = options.little ?? true;
  const columnMajor = Array.from({ length: rows * CIFAR_PIXELS }, (_, k) => pixel(k % rows, Math.floor(k / rows)));
  const data: MatrixSpec = options.asDouble
    ? { name: options.dataName ?? 'data', mxClass: MX.DOUBLE, dims: [rows, CIFAR_PIXELS], real: doubles(columnMajor, little) }
    : { name: options.dataName ?? 'data', mxClass: MX.UINT8, dims: [rows, CIFAR_PIXELS], real: { type: MI.UINT8, data: Uint8Array.from(columnMajor) } };
  return matFile([
    matrix(data, little),
    matrix({ name: 'labels', mxClass: MX.DOUBLE, dims: [labels.length, 1], real: doubles(labels, little) }, little),
    matrix({ name: 'batch_label', mxClass: MX.CHAR, dims: [1, 5], real: chars('batch') }, little),
  ], little);
}

describe('the MAT fixtures', () => {
  it('hold a compressed data_batch_1.mat and an uncompressed test_batch.mat', () => {
    const elementType = (file: string) => readFileSync(join(matDir, file)).readUInt32LE(128);
    expect(elementType('data_batch_1.mat')).toBe(MI.COMPRESSED);
    expect(elementType('test_batch.mat')).toBe(MI.MATRIX);
  });
});

describe('parseCifarMat / readCifarMatBatch', () => {
  it.each([
    ['data_batch_1.mat (compressed)', 'data_batch_1.mat', binTrain],
    ['test_batch.mat (uncompressed)', 'test_batch.mat', binTest],
  ])('%s: the same pixels and labels as the binary fixture, byte for byte', (_, file, expected) => {
    const data = readCifarMatBatch(join(matDir, file));
    expect(data.count).toBe(expected.count);
    expect(Object.getPrototypeOf(data.pixels)).toBe(Uint8Array.prototype);
    expect(Buffer.from(data.pixels).equals(Buffer.from(expected.pixels))).toBe(true);
    expect(Array.from(data.labels)).toEqual(Array.from(expected.labels));
    expect(data.sources).toEqual([join(matDir, file)]);
  });

  it('reads the class names from batches.meta.mat (a cell array of char)', () => {
    expect(readCifarMatClassNames(join(matDir, 'batches.meta.mat'))).toEqual(readCifarClassNames(join(tinyCifarDir, 'batches.meta.txt')));
  });

  it('reads class names stored as MATLAB writes them (miUINT16 chars, either byte order) and from a char matrix', () => {
    const names = readCifarClassNames(join(tinyCifarDir, 'batches.meta.txt'));
    const utf16 = (text: string, little: boolean) => ({ type: MI.UINT16, data: numbers([...text].map((c) => c.charCodeAt(0)), 2, (v, o, x) => v.setUint16(o, x, little)) });
    for (const little of [true, false]) {
      const cells = names.map((name) => ({ name: '', mxClass: MX.CHAR, dims: [1, name.length], real: utf16(name, little) }));
      const file = matFile([matrix({ name: 'label_names', mxClass: MX.CELL, dims: [10, 1], cells }, little)], little);
      expect(parseCifarMatMeta(file, 'cell.mat'), `little-endian: ${little}`).toEqual(names);
    }
    // A 10 × 10 char matrix, names padded with spaces, stored column-major.
    const padded = names.map((name) => name.padEnd(10));
    const columnMajor = Array.from({ length: 100 }, (_, k) => padded[k % 10][Math.floor(k / 10)]).join('');
    const file = matFile([matrix({ name: 'label_names', mxClass: MX.CHAR, dims: [10, 10], real: utf16(columnMajor, true) })]);
    expect(parseCifarMatMeta(file, 'matrix.mat')).toEqual(names);
  });

  it.each([
    ['uint8, little-endian', {}],
    ['double, little-endian', { asDouble: true }],
    ['uint8, big-endian', { little: false }],
    ['double, big-endian', { little: false, asDouble: true }],
  ])('transposes MATLAB column-major data into row-major records (%s)', (_, options) => {
    const data = parseCifarMat(cifarMat(3, [9, 0, 4], options), 'made.mat');
    expect(data.count).toBe(3);
    expect(Array.from(data.labels)).toEqual([9, 0, 4]);
    for (const i of [0, 1, 2]) for (const j of [0, 1, 63, 64, 1023, 1024, 3071]) expect(data.pixels[i * CIFAR_PIXELS + j], `${i},${j}`).toBe(pixel(i, j));
  });
});

describe('parseMatFile', () => {
  it('lists the variables with class, size and contents', () => {
    const variables = parseMatFile(readFileSync(join(matDir, 'data_batch_1.mat')), 'data_batch_1.mat');
    expect([...variables.keys()].sort()).toEqual(['batch_label', 'data', 'labels']);
    expect(variables.get('data')).toMatchObject({ className: 'uint8', dims: [40, 3072] });
    expect(variables.get('labels')).toMatchObject({ className: 'uint8', dims: [40, 1] });
    expect(variables.get('batch_label')).toMatchObject({ className: 'char', text: 'training batch 1 of 1' });
    const meta = parseMatFile(readFileSync(join(matDir, 'batches.meta.mat')));
    expect(meta.get('label_names')).toMatchObject({ className: 'cell', dims: [10, 1] });
    expect(meta.get('num_vis')).toMatchObject({ className: 'double', dims: [1, 1], values: new Float64Array([3072]) });
  });

  it('reads a compressed element it deflated itself', () => {
    const inner = matrix({ name: 'x', mxClass: MX.DOUBLE, dims: [1, 2], real: doubles([1.5, -2]) });
    const file = matFile([element(MI.COMPRESSED, deflateSync(inner), true), matrix({ name: 'y', mxClass: MX.CHAR, dims: [1, 2], real: chars('ok') })]);
    const variables = parseMatFile(file);
    expect(variables.get('x')?.values).toEqual(new Float64Array([1.5, -2]));
    expect(variables.get('y')?.text).toBe('ok');
  });
});

describe('bad MAT files: one CifarFormatError naming the file and the problem', () => {
  const testMat = readFileSync(join(matDir, 'test_batch.mat'));
  const trainMat = readFileSync(join(matDir, 'data_batch_1.mat'));

  function formatError(bytes: Uint8Array, file = '/data/test_batch.mat'): CifarFormatError {
    const error = thrown(() => parseCifarMat(bytes, file)) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.op).toBe('parseCifarMat');
    expect(error.file).toBe(file);
    expect(error.message).toContain(file);
    return error;
  }

  it('no data variable', () => {
    // scipy wrote the name 'data' as a small element: type miINT8 (1), 4 bytes, then the name.
    const renamed = Buffer.from(testMat);
    const at = renamed.indexOf(Buffer.from([1, 0, 4, 0, 0x64, 0x61, 0x74, 0x61]));
    expect(at).toBeGreaterThan(128);
    renamed.write('dxta', at + 4, 'latin1');
    const error = formatError(renamed);
    expect(error.message).toMatch(/MAT variables must be a variable 'data' .*got variables 'dxta', 'labels', 'batch_label'/);
  });

  it('a MATLAB v7.3 (HDF5) file', () => {
    const header = Buffer.alloc(1024);
    header.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .', 0, 'latin1');
    header.writeUInt16LE(0x0200, 124);
    header.write('IM', 126, 'latin1');
    header.write('\x89HDF\r\n\x1a\n', 512, 'latin1');
    const error = formatError(header, '/data/v73.mat');
    expect(error.message).toContain('MATLAB v7.3 (HDF5) files are not supported; save with -v7 or -v6');
  });

  it.each([
    ['a truncated file', () => testMat.subarray(0, 5000), /truncated file/],
    ['a truncated header', () => testMat.subarray(0, 100), /header must be a 128-byte MAT-file header, got 100 bytes/],
    ['not a MAT-file (a binary batch)', () => readFileSync(join(tinyCifarDir, 'test_batch.bin')), /header must be a MAT-file \(Level 5\) header ending in 'IM' or 'MI'/],
    ['a corrupt compressed element', () => {
      const bytes = Buffer.from(trainMat);
      bytes.fill(0x55, 200, 400);
      return bytes;
    }, /compressed element must be zlib data, got a corrupt stream/],
    ['labels outside 0-9', () => cifarMat(2, [1, 12]), /record 1: label must be an integer in 0\.\.9, got 12/],
    ['fewer labels than rows', () => cifarMat(3, [1, 2]), /variable 'labels' must be a numeric vector of 3 labels.*got a double array of size 2 × 1/],
    ['pixels outside 0-255', () => {
      const values = Array.from({ length: 2 * 3072 }, (_, k) => (k === 5 ? 256 : 0));
      return matFile([
        matrix({ name: 'data', mxClass: MX.DOUBLE, dims: [2, 3072], real: doubles(values) }),
        matrix({ name: 'labels', mxClass: MX.DOUBLE, dims: [2, 1], real: doubles([0, 0]) }),
      ]);
    }, /record 1: variable 'data' must be integers in 0\.\.255, got 256 \(column 3\)/],
    ['data not N × 3072', () => matFile([
      matrix({ name: 'data', mxClass: MX.UINT8, dims: [3072, 2], real: { type: MI.UINT8, data: new Uint8Array(6144) } }),
      matrix({ name: 'labels', mxClass: MX.DOUBLE, dims: [2, 1], real: doubles([0, 0]) }),
    ]), /variable 'data' must be a uint8 .* matrix of size N × 3072 .*got a uint8 array of size 3072 × 2/],
    ['a struct', () => matFile([matrix({ name: 'data', mxClass: MX.STRUCT, dims: [1, 1] })]), /variable 'data' must be a numeric, char or cell array, got MATLAB class 'struct' \(not supported\)/],
    ['a complex array', () => matFile([matrix({ name: 'data', mxClass: MX.DOUBLE, dims: [1, 1], real: doubles([1]), complex: true })]), /must be a real array, got a complex array/],
    ['a real part of the wrong length', () => matFile([matrix({ name: 'data', mxClass: MX.DOUBLE, dims: [2, 2], real: doubles([1, 2, 3]) })]), /variable 'data' must be 4 elements \(32 bytes\), got 24 bytes/],
  ])('%s', (_, bytes, message) => {
    expect(formatError(bytes()).message).toMatch(message);
  });

  it('label_names that are not 10 names, and missing files', () => {
    const meta = matFile([matrix({ name: 'label_names', mxClass: MX.CELL, dims: [2, 1], cells: [{ name: '', mxClass: MX.CHAR, dims: [1, 3], real: chars('cat') }, { name: '', mxClass: MX.CHAR, dims: [1, 3], real: chars('dog') }] })]);
    const error = thrown(() => parseCifarMatMeta(meta, 'batches.meta.mat')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.message).toMatch(/batches\.meta\.mat: variable 'label_names' must be 10 non-empty names, got 2 names/);
    const missing = thrown(() => readCifarMatBatch(join(matDir, 'data_batch_9.mat'))) as TrainerArgumentError;
    expect(missing).toBeInstanceOf(TrainerArgumentError);
    expect(missing.actual).toMatch(/data_batch_9\.mat.*ENOENT/);
  });
});

it('reads 10000 official-size records (compressed): every record and label in place (its speed is a bench figure: bnmlp bench --suite trainer)', () => {
  const rows = 10000;
  // Column-major: column j holds pixel j of every record; record i repeats fixture record i mod 40.
  const columnMajor = new Uint8Array(rows * CIFAR_PIXELS);
  for (let j = 0; j < CIFAR_PIXELS; j++) for (let i = 0; i < rows; i++) columnMajor[j * rows + i] = binTrain.pixels[(i % 40) * CIFAR_PIXELS + j];
  const labels = Uint8Array.from({ length: rows }, (_, i) => binTrain.labels[i % 40]);
  const file = matFile([
    element(MI.COMPRESSED, deflateSync(matrix({ name: 'data', mxClass: MX.UINT8, dims: [rows, CIFAR_PIXELS], real: { type: MI.UINT8, data: columnMajor } }), { level: 1 }), true),
    matrix({ name: 'labels', mxClass: MX.UINT8, dims: [rows, 1], real: { type: MI.UINT8, data: labels } }),
  ]);
  const data = parseCifarMat(file, 'big.mat');
  expect(data.count).toBe(rows);
  expect(Buffer.from(data.pixels.subarray(40 * CIFAR_PIXELS, 80 * CIFAR_PIXELS)).equals(Buffer.from(binTrain.pixels))).toBe(true);
  expect(data.pixels[9999 * CIFAR_PIXELS + 3071]).toBe(binTrain.pixels[39 * CIFAR_PIXELS + 3071]);
});
