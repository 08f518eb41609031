import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMatFile } from '@bnmlp/trainer';
import { afterAll, describe, expect, it } from 'vitest';
import { array, columnMajorToRowMajor, rowMajorToColumnMajor, scalar, text, type NamedValues } from './arrays.js';
import { DiagnoseInputError } from './errors.js';
import { decodeFile, decodeJson, encodeFile, encodeJson, readNamedValues } from './files.js';
import { decodeMat, encodeMat } from './mat.js';
import { decodeNpy, decodeNpz, encodeNpy, encodeNpz } from './npz.js';

const PYTHON = '/usr/bin/python3';
const python = (code: string, cwd: string) => spawnSync(PYTHON, ['-c', code], { cwd, encoding: 'utf8' });
const has = (module: string) => spawnSync(PYTHON, ['-c', `import ${module}`]).status === 0;
const NUMPY = has('numpy');
const SCIPY = NUMPY && has('scipy.io');
if (!NUMPY) console.log('numpy is not installed for /usr/bin/python3: the numpy round trips are skipped (apt-get install python3-numpy)');
if (!SCIPY) console.log('scipy is not installed for /usr/bin/python3: the scipy.io.loadmat round trip is skipped');

const tmp = mkdtempSync(join(tmpdir(), 'bnmlp-diagnose-files-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Entries of every kind a case has: scalars, a vector, an empty vector, matrices, text with newlines and non-ASCII. */
function sample(): NamedValues {
  return new Map([
    ['format', text('bnmlp-diagnose-case')],
    ['version', scalar(1)],
    ['README', text('line one\nline two: σ² + ε, λ‖W‖²')],
    ['lambda', scalar(0.01)],
    ['hidden', array([2], [50, 30])],
    ['empty', array([0], [])],
    ['W1', array([2, 3], [1, 2, 3, 4, 5, 6.5e-300])],
    ['X', array([3, 2], [0.1, -0.2, 1 / 3, Math.PI, 0, 1e300])],
  ]);
}

function expectSame(a: NamedValues, b: NamedValues, squeezeVectors = false): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [name, v] of a) {
    const w = b.get(name)!;
    expect(w.kind, name).toBe(v.kind);
    if (v.kind === 'text' && w.kind === 'text') expect(w.text, name).toBe(v.text);
    if (v.kind === 'array' && w.kind === 'array') {
      if (squeezeVectors) expect(w.shape.filter((d) => d !== 1), name).toEqual(v.shape.filter((d) => d !== 1));
      else expect(w.shape, name).toEqual(v.shape);
      expect(Array.from(w.data), name).toEqual(Array.from(v.data));
    }
  }
}

describe('column-major conversions', () => {
  it('round-trip any rank, and agree with a hand-made 2×3', () => {
    expect(Array.from(columnMajorToRowMajor([2, 3], [1, 4, 2, 5, 3, 6]))).toEqual([1, 2, 3, 4, 5, 6]);
    const data = Array.from({ length: 24 }, (_, i) => i);
    expect(Array.from(columnMajorToRowMajor([2, 3, 4], rowMajorToColumnMajor([2, 3, 4], data)))).toEqual(data);
  });
});

describe('.npy and .npz', () => {
  it('round-trip through our own reader, values bit for bit', () => {
    const values = sample();
    expectSame(values, decodeNpz(encodeNpz(values), 'x.npz'));
  });

  it('writes version 1.0 headers padded to 64 bytes, <f8 data and <U text', () => {
    const bytes = encodeNpy(array([2, 3], [1, 2, 3, 4, 5, 6]));
    expect(Buffer.from(bytes.subarray(0, 6)).toString('latin1')).toBe('\x93NUMPY');
    const headerLength = bytes[8] | (bytes[9] << 8);
    expect((10 + headerLength) % 64).toBe(0);
    expect(Buffer.from(bytes.subarray(10, 10 + headerLength)).toString('latin1')).toMatch(/^\{'descr': '<f8', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
    expect(bytes.length).toBe(10 + headerLength + 48);
  });

  it('reads Fortran order, float32, integers, bool and big-endian data', () => {
    const head = (dict: string) => {
      const padded = dict.padEnd(Math.ceil((dict.length + 11) / 64) * 64 - 11, ' ') + '\n';
      const out = Buffer.alloc(10 + padded.length);
      Buffer.from('\x93NUMPY\x01\x00', 'latin1').copy(out);
      out.writeUInt16LE(padded.length, 8);
      out.write(padded, 10, 'latin1');
      return out;
    };
    const f4 = Buffer.alloc(16);
    [1, 2, 3, 4].forEach((v, i) => f4.writeFloatLE(v, i * 4));
    const fortran = decodeNpy(Buffer.concat([head("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }"), f4]), 'f');
    expect(fortran.kind === 'array' && Array.from(fortran.data)).toEqual([1, 3, 2, 4]);
    const i8 = Buffer.alloc(16);
    i8.writeBigInt64LE(-3n, 0);
    i8.writeBigInt64LE(7n, 8);
    const ints = decodeNpy(Buffer.concat([head("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }"), i8]), 'i');
    expect(ints.kind === 'array' && Array.from(ints.data)).toEqual([-3, 7]);
    const be = Buffer.alloc(8);
    be.writeDoubleBE(0.1, 0);
    const big = decodeNpy(Buffer.concat([head("{'descr': '>f8', 'fortran_order': False, 'shape': (), }"), be]), 'b');
    expect(big.kind === 'array' && [big.shape, Array.from(big.data)]).toEqual([[], [0.1]]);
    expect(() => decodeNpy(Buffer.concat([head("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"), Buffer.alloc(8)]), 'obj')).toThrow(/dtype '\|O' is not supported.*pickle/);
    expect(() => decodeNpy(Buffer.from('not numpy'), 'junk')).toThrow(/junk is not a \.npy array/);
  });

  it.skipIf(!NUMPY)('numpy.load reads our .npz (values bit for bit, text without pickle), and we read numpy.savez and savez_compressed', () => {
    const path = join(tmp, 'ours.npz');
    writeFileSync(path, encodeNpz(sample()));
    const check = python(
      [
        'import numpy as np, json',
        "z = np.load('ours.npz', allow_pickle=False)",
        "out = {k: (str(z[k]) if z[k].dtype.kind == 'U' else [list(z[k].shape), z[k].ravel().tolist(), z[k].dtype.str]) for k in z.files}",
        'print(json.dumps(out))',
      ].join('\n'),
      tmp,
    );
    expect(check.stderr).toBe('');
    const seen = JSON.parse(check.stdout);
    expect(seen.README).toBe('line one\nline two: σ² + ε, λ‖W‖²');
    expect(seen.W1).toEqual([[2, 3], [1, 2, 3, 4, 5, 6.5e-300], '<f8']);
    expect(seen.X[1][2]).toBe(1 / 3);
    expect(seen.version).toEqual([[], [1], '<f8']);
    expect(seen.empty).toEqual([[0], [], '<f8']);
    const write = python(
      [
        'import numpy as np',
        'W = np.arange(6, dtype=np.float64).reshape(2, 3) / 7',
        "np.savez('plain.npz', W1=W, b1=np.float32([1.5, 2.5]), y=np.array([3, 1], dtype=np.int64), F=np.asfortranarray(W), note=np.array('héllo'), h=1e-5)",
        "np.savez_compressed('packed.npz', W1=W.T.astype('>f8'))",
      ].join('\n'),
      tmp,
    );
    expect(write.stderr).toBe('');
    const plain = readNamedValues(join(tmp, 'plain.npz'));
    const W = Array.from({ length: 6 }, (_, i) => i / 7);
    expect(plain.get('W1')).toEqual(array([2, 3], W));
    expect(plain.get('F')).toEqual(array([2, 3], W));
    expect(plain.get('b1')).toEqual(array([2], [1.5, 2.5]));
    expect(plain.get('y')).toEqual(array([2], [3, 1]));
    expect(plain.get('h')).toEqual(scalar(1e-5));
    expect(plain.get('note')).toEqual(text('héllo'));
    expect(readNamedValues(join(tmp, 'packed.npz')).get('W1')).toEqual(array([3, 2], [0, 3, 1, 4, 2, 5].map((i) => i / 7)));
  });
});

describe('.mat (Level 5)', () => {
  it("our writer's files read back through @bnmlp/trainer's parser: doubles column-major, vectors as 1×n rows, text", () => {
    const values = sample();
    const bytes = encodeMat(values);
    const raw = parseMatFile(bytes, 'x.mat');
    expect(raw.get('W1')!.dims).toEqual([2, 3]);
    expect(Array.from(raw.get('W1')!.values!)).toEqual([1, 4, 2, 5, 3, 6.5e-300]);
    expect(raw.get('hidden')!.dims).toEqual([1, 2]);
    expect(raw.get('lambda')!.dims).toEqual([1, 1]);
    expect(raw.get('README')!.text).toBe('line one\nline two: σ² + ε, λ‖W‖²');
    expectSame(values, decodeMat(bytes, 'x.mat'), true);
    expect(bytes.length % 8).toBe(0);
  });

  it('reads a cell array W as W1, W2, … and refuses a struct with the way out', () => {
    // A cell {A, B} built by hand: miMATRIX(cell) holding two miMATRIX(double).
    const el = (type: number, data: Uint8Array) => {
      const out = Buffer.alloc(8 + Math.ceil(data.length / 8) * 8);
      out.writeUInt32LE(type, 0);
      out.writeUInt32LE(data.length, 4);
      Buffer.from(data).copy(out, 8);
      return out;
    };
    const int32s = (...v: number[]) => {
      const b = Buffer.alloc(v.length * 4);
      v.forEach((x, i) => b.writeInt32LE(x, i * 4));
      return b;
    };
    const flags = (cls: number) => el(6, Buffer.from([cls, 0, 0, 0, 0, 0, 0, 0]));
    const double = (name: string, v: number[]) => {
      const d = Buffer.alloc(v.length * 8);
      v.forEach((x, i) => d.writeDoubleLE(x, i * 8));
      return el(14, Buffer.concat([flags(6), el(5, int32s(1, v.length)), el(1, Buffer.from(name)), el(9, d)]));
    };
    const cell = el(14, Buffer.concat([flags(1), el(5, int32s(1, 2)), el(1, Buffer.from('W')), double('', [1, 2]), double('', [3])]));
    const header = Buffer.alloc(128, 0x20);
    header.writeUInt16LE(0x0100, 124);
    header.write('IM', 126, 'latin1');
    const values = decodeMat(Buffer.concat([header, cell]), 'cells.mat');
    expect([...values.keys()]).toEqual(['W1', 'W2']);
    expect(values.get('W2')).toEqual(array([1, 1], [3]));
    const struct = el(14, Buffer.concat([flags(2), el(5, int32s(1, 1)), el(1, Buffer.from('Grads'))]));
    expect(() => decodeFile('mat', Buffer.concat([header, struct]), 'grads.mat')).toThrow(/grads\.mat: .*class 'struct'.*save\('grads\.mat', '-struct', 'Grads'\)/);
  });

  it.skipIf(!SCIPY)('scipy.io.loadmat reads our files; we read scipy.io.savemat (compressed too)', () => {
    writeFileSync(join(tmp, 'ours.mat'), encodeMat(sample()));
    const check = python(
      [
        'import scipy.io, json',
        "m = scipy.io.loadmat('ours.mat')",
        "print(json.dumps({k: (str(m[k][0]) if m[k].dtype.kind == 'U' else [list(m[k].shape), m[k].ravel(order='C').tolist()]) for k in m if not k.startswith('__')}))",
      ].join('\n'),
      tmp,
    );
    expect(check.stderr).toBe('');
    const seen = JSON.parse(check.stdout);
    expect(seen.W1).toEqual([[2, 3], [1, 2, 3, 4, 5, 6.5e-300]]);
    expect(seen.hidden).toEqual([[1, 2], [50, 30]]);
    expect(seen.README).toBe('line one\nline two: σ² + ε, λ‖W‖²');
    const write = python(
      [
        'import numpy as np, scipy.io',
        'W = np.arange(6.0).reshape(2, 3) / 7',
        "scipy.io.savemat('theirs.mat', {'W1': W, 'b1': np.array([0.5, 1.5]), 'h': 1e-5}, do_compression=True)",
      ].join('\n'),
      tmp,
    );
    expect(write.stderr).toBe('');
    const theirs = readNamedValues(join(tmp, 'theirs.mat'));
    expect(theirs.get('W1')).toEqual(array([2, 3], Array.from({ length: 6 }, (_, i) => i / 7)));
    expect(theirs.get('b1')).toEqual(array([1, 2], [0.5, 1.5]));
  });
});

describe('.json', () => {
  it('round-trips nested lists, scalars and text; reads Python json.dump NaN/Infinity', () => {
    const values = sample();
    expectSame(values, decodeJson(encodeJson(values), 'x.json'));
    const odd = decodeJson('{"W1": [[1, NaN], [Infinity, -Infinity]], "note": "NaN stays text", "b1": [null, 2]}', 'odd.json');
    expect(Array.from((odd.get('W1') as { data: Float64Array }).data)).toEqual([1, NaN, Infinity, -Infinity]);
    expect(odd.get('note')).toEqual(text('NaN stays text'));
    expect(Array.from((odd.get('b1') as { data: Float64Array }).data)).toEqual([NaN, 2]);
  });

  it('names the file and the entry for bad JSON', () => {
    expect(() => decodeJson('{"W1": [[1, 2], [3]]}', 'r.json')).toThrow(DiagnoseInputError);
    expect(() => decodeJson('{"W1": [[1, 2], [3]]}', 'r.json')).toThrow(/r\.json: 'W1' is a ragged nested list: \[1\] should have 2 entries/);
    expect(() => decodeJson('[1, 2]', 'a.json')).toThrow(/a\.json: a JSON file must hold one object/);
    expect(() => decodeJson('{"W1": [1, "x"]}', 'x.json')).toThrow(/'W1' has a non-number "x" at \[1\]/);
    expect(() => decodeJson('{oops', 'bad.json')).toThrow(/bad\.json: not valid JSON/);
  });
});

describe('reading files', () => {
  it('says which file, and why, for a missing file, an unknown extension and unreadable contents', () => {
    expect(() => readNamedValues(join(tmp, 'nope.npz'), 'nope.npz')).toThrow(/^bnmlp diagnose: nope\.npz: no such file$/);
    writeFileSync(join(tmp, 'grads.txt'), 'x');
    expect(() => readNamedValues(join(tmp, 'grads.txt'), 'grads.txt')).toThrow(/grads\.txt: unknown file type '\.txt': use \.npz, \.mat or \.json/);
    writeFileSync(join(tmp, 'junk.npz'), 'not a zip');
    expect(() => readNamedValues(join(tmp, 'junk.npz'), 'junk.npz')).toThrow(/junk\.npz: unreadable as a \.npz file: not an \.npz \(zip\) archive/);
    writeFileSync(join(tmp, 'junk.mat'), Buffer.alloc(200, 1));
    expect(() => readNamedValues(join(tmp, 'junk.mat'), 'junk.mat')).toThrow(/junk\.mat: unreadable as a \.mat file/);
    for (const format of ['npz', 'mat', 'json'] as const) expectSame(sample(), decodeFile(format, encodeFile(format, sample()), `x.${format}`), format === 'mat');
    expect(readFileSync(join(tmp, 'grads.txt'), 'utf8')).toBe('x');
  });
});
