import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseCifarPickle, parseCifarPickleMeta, readCifarPickleBatch, readCifarPickleClassNames } from './cifar-python.js';
import { CIFAR_PIXELS, readCifarBatch, readCifarClassNames } from './cifar.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';
import { fixturesDir, tinyCifarDir } from './test-support/paths.js';
import { thrown } from './test-support/thrown.js';

const pyDir = join(fixturesDir, 'cifar-10-tiny-py');
const py3Dir = join(fixturesDir, 'cifar-10-tiny-py3');
const binTrain = readCifarBatch(join(tinyCifarDir, 'data_batch_1.bin'));
const binTest = readCifarBatch(join(tinyCifarDir, 'test_batch.bin'));
const classNames = readCifarClassNames(join(tinyCifarDir, 'batches.meta.txt'));


/** `bytes` with the first occurrence of `from` (latin1) replaced by `to` of the same length. */
function replaced(bytes: Uint8Array, from: string, to: string): Buffer {
  const copy = Buffer.from(bytes);
  const at = copy.indexOf(Buffer.from(from, 'latin1'));
  if (at < 0 || from.length !== to.length) throw new Error(`pattern ${JSON.stringify(from)} not found`);
  copy.set(Buffer.from(to, 'latin1'), at);
  return copy;
}

describe('the python fixtures', () => {
  it('are in the forms they stand for: protocol 2 with Python 2 str keys; protocols 5 and 4 with str keys', () => {
    const official = readFileSync(join(pyDir, 'data_batch_1'));
    expect([official[0], official[1]]).toEqual([0x80, 2]);
    expect(official.includes(Buffer.from('U\x04data', 'latin1'))).toBe(true); // SHORT_BINSTRING key
    expect(official.includes(Buffer.from('numpy.core.multiarray\n_reconstruct', 'latin1'))).toBe(true);
    const p5 = readFileSync(join(py3Dir, 'data_batch_1'));
    expect([p5[0], p5[1]]).toEqual([0x80, 5]);
    expect(p5.includes(Buffer.from('\x8c\x04data', 'latin1'))).toBe(true); // SHORT_BINUNICODE key
    expect(p5.includes(Buffer.from('_frombuffer', 'latin1'))).toBe(true);
    expect([readFileSync(join(py3Dir, 'test_batch'))[1], readFileSync(join(py3Dir, 'batches.meta'))[1]]).toEqual([4, 4]);
  });
});

describe('parseCifarPickle / readCifarPickleBatch', () => {
  it.each([
    ['protocol 2, bytes keys (official form)', pyDir],
    ['protocols 5 and 4, str keys (Python 3 re-save)', py3Dir],
  ])('%s: the same pixels and labels as the binary fixture, byte for byte', (_, dir) => {
    const train = readCifarPickleBatch(join(dir, 'data_batch_1'));
    const test = readCifarPickleBatch(join(dir, 'test_batch'));
    expect(train.count).toBe(40);
    expect(Object.getPrototypeOf(train.pixels)).toBe(Uint8Array.prototype); // not a (pooled) Buffer view
    expect(Buffer.from(train.pixels).equals(Buffer.from(binTrain.pixels))).toBe(true);
    expect(Array.from(train.labels)).toEqual(Array.from(binTrain.labels));
    expect(Buffer.from(test.pixels).equals(Buffer.from(binTest.pixels))).toBe(true);
    expect(Array.from(test.labels)).toEqual(Array.from(binTest.labels));
    expect(train.sources).toEqual([join(dir, 'data_batch_1')]);
    expect(readCifarPickleClassNames(join(dir, 'batches.meta'))).toEqual(classNames);
  });

  it('copies the pixels: the input buffer is not kept (protocol 5 bytes would otherwise be a view)', () => {
    const bytes = readFileSync(join(py3Dir, 'data_batch_1'));
    const data = parseCifarPickle(bytes, 'p5');
    expect(data.pixels.buffer).not.toBe(bytes.buffer);
    bytes.fill(0);
    expect(data.pixels[0]).toBe(binTrain.pixels[0]);
    expect(data.pixels[0]).not.toBe(0);
  });

  it('keeps bytes 0x80-0x9f of Python 2 strings even where TextDecoder(\'ascii\') follows the Encoding standard', () => {
    // pickleparser decodes Python 2 str with TextDecoder('ascii'), i.e. windows-1252: browsers and
    // Node <= 20.18.2 turn 0x80 into U+20AC. Simulate that decoder; the pixels must not change.
    const Real = globalThis.TextDecoder;
    class Windows1252 extends Real {
      override decode(input?: Uint8Array): string {
        const text = super.decode(input);
        return this.encoding === 'windows-1252' ? text.replaceAll('\x80', '\u20ac') : text;
      }
    }
    expect(binTrain.pixels.includes(0x80)).toBe(true);
    vi.stubGlobal('TextDecoder', Windows1252);
    try {
      const data = readCifarPickleBatch(join(pyDir, 'data_batch_1'));
      expect(Buffer.from(data.pixels).equals(Buffer.from(binTrain.pixels))).toBe(true);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('reads a Buffer slice with a byte offset', () => {
    const file = readFileSync(join(pyDir, 'test_batch'));
    const padded = Buffer.alloc(file.length + 7);
    file.copy(padded, 7);
    const data = parseCifarPickle(padded.subarray(7), 'slice');
    expect(Buffer.from(data.pixels).equals(Buffer.from(binTest.pixels))).toBe(true);
  });
});

describe('bad python files: one CifarFormatError naming the file and the problem', () => {
  const official = readFileSync(join(pyDir, 'data_batch_1'));

  it.each([
    ['a truncated pickle', official.subarray(0, official.length >> 1), /truncated or corrupt pickle/, 'pickle'],
    ['a pickle cut before STOP', official.subarray(0, official.length - 1), /truncated or corrupt pickle/, 'pickle'],
    ['no data key', replaced(official, 'U\x04data', 'U\x04dxta'), /pickle keys must be a dict with 'data'.*got keys .*'dxta'/, 'pickle keys'],
    ['no labels key', replaced(official, 'U\x06labels', 'U\x06labelz'), /a dict with 'labels'/, 'pickle keys'],
    ['data not uint8', replaced(official, 'U\x02u1', 'U\x02i1'), /data must be a numpy uint8 array of shape \[N, 3072\].*got a numpy 'i1' array of shape \[40, 3072\]/, 'data'],
    ['data not [N, 3072]', replaced(official, 'K(M\x00\x0c\x86', 'K(M\x00\x06\x86'), /got a numpy 'u1' array of shape \[40, 1536\]/, 'data'],
    ['a binary batch, not a pickle', readFileSync(join(tinyCifarDir, 'data_batch_1.bin')), /truncated or corrupt pickle/, 'pickle'],
    ['a pickle that is not a dict', Buffer.from('\x80\x02]q\x00.', 'latin1'), /pickle must be a pickled dict, got a list of 0/, 'pickle'],
  ])('%s', (_, bytes, message, argument) => {
    const error = thrown(() => parseCifarPickle(bytes, '/data/data_batch_1')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.op).toBe('parseCifarPickle');
    expect(error.file).toBe('/data/data_batch_1');
    expect(error.argument).toBe(argument);
    expect(error.message).toContain('/data/data_batch_1');
    expect(error.message).toMatch(message);
  });

  it('a label outside 0-9, naming the record', () => {
    // The first label of the fixture is 3 (K\x03 right after the labels list opens).
    const bytes = replaced(official, ']q\x04(K\x03', ']q\x04(K\x0c');
    const error = thrown(() => parseCifarPickle(bytes, 'labels.pkl')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect([error.file, error.record, error.argument, error.actual]).toEqual(['labels.pkl', 0, 'label', '12']);
    expect(error.message).toMatch(/labels\.pkl, record 0: label must be an int in 0\.\.9, got 12/);
  });

  it('a global in the pickle is never called (os.system stays an inert placeholder)', () => {
    const evil = Buffer.from("\x80\x02cos\nsystem\nq\x00U\x0etouch /tmp/pwnq\x01\x85q\x02Rq\x03.", 'latin1');
    const error = thrown(() => parseCifarPickle(evil, 'evil.pkl')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.message).toMatch(/evil\.pkl: pickle must be a pickled dict, got/);
  });

  it('batches.meta without 10 names, and missing files', () => {
    const meta = Buffer.from('\x80\x02}q\x00U\x0blabel_namesq\x01]q\x02(U\x03catq\x03U\x03dogq\x04es.', 'latin1');
    const error = thrown(() => parseCifarPickleMeta(meta, 'batches.meta')) as CifarFormatError;
    expect(error).toBeInstanceOf(CifarFormatError);
    expect(error.message).toMatch(/batches\.meta: label_names must be a list of 10 non-empty strings, got a list of 2/);
    const missing = thrown(() => readCifarPickleBatch(join(pyDir, 'data_batch_9'))) as TrainerArgumentError;
    expect(missing).toBeInstanceOf(TrainerArgumentError);
    expect(missing.actual).toMatch(/data_batch_9.*ENOENT/);
    expect(() => parseCifarPickle('not bytes' as unknown as Uint8Array)).toThrow(/argument 'bytes' must be a Uint8Array/);
  });
});

const python = '/usr/bin/python3';
const numpyAvailable = spawnSync(python, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

const roundTripTitle = numpyAvailable ? `round trip through ${python} with numpy` : `round trip (skipped: ${python} cannot import numpy)`;
describe.skipIf(!numpyAvailable)(roundTripTitle, () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'bnmlp-pickle-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('pickles written now at protocols 2-5, with str or bytes keys and list or ndarray labels, read back identically', () => {
    const script = `
import pickle, sys, numpy as np
raw = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(-1, 3073)
data, labels = raw[:, 1:].copy(), [int(x) for x in raw[:, 0]]
for protocol in (2, 3, 4, 5):
    for keys in ('str', 'bytes'):
        k = (lambda s: s.encode()) if keys == 'bytes' else (lambda s: s)
        for kind, lab in (('list', labels), ('int64', np.array(labels, dtype=np.int64))):
            with open('%s/p%d-%s-%s' % (sys.argv[2], protocol, keys, kind), 'wb') as f:
                pickle.dump({k('data'): data, k('labels'): lab, k('batch_label'): k('x')}, f, protocol=protocol)
`;
    execFileSync(python, ['-c', script, join(tinyCifarDir, 'data_batch_1.bin'), tmp]);
    const names = readdirSync(tmp).sort();
    expect(names).toHaveLength(16);
    for (const name of names) {
      const data = readCifarPickleBatch(join(tmp, name));
      expect(Buffer.from(data.pixels).equals(Buffer.from(binTrain.pixels)), name).toBe(true);
      expect(Array.from(data.labels), name).toEqual(Array.from(binTrain.labels));
    }
  });
});

it('reads 10000 official-size records: every pixel and label in place (its speed is a bench figure: bnmlp bench --suite trainer)', () => {
  // Built from the fixture's own bytes: its 40 records repeated to 10000 (the data and shape fields change).
  const official = readFileSync(join(pyDir, 'data_batch_1'));
  const head = official.indexOf(Buffer.from('K(M\x00\x0c\x86', 'latin1'));
  const dataStart = official.indexOf(Buffer.from('T\x00\xe0\x01\x00', 'latin1')); // BINSTRING of 40 × 3072 = 122880 bytes
  expect([head > 0, dataStart > head]).toEqual([true, true]);
  const pixels = Buffer.alloc(10000 * CIFAR_PIXELS);
  for (let r = 0; r < 10000; r++) pixels.set(binTrain.pixels.subarray((r % 40) * CIFAR_PIXELS, (r % 40 + 1) * CIFAR_PIXELS), r * CIFAR_PIXELS);
  const labelsStart = official.indexOf(Buffer.from(']q\x04(', 'latin1'));
  const labelsEnd = official.indexOf(0x65, labelsStart); // APPENDS
  const labelOps = Buffer.alloc(2 * 10000);
  for (let r = 0; r < 10000; r++) labelOps.set([0x4b, binTrain.labels[r % 40]], 2 * r);
  const big = Buffer.concat([
    official.subarray(0, labelsStart + 4), labelOps, official.subarray(labelsEnd, head),
    Buffer.from('M\x10\x27M\x00\x0c\x86', 'latin1'), official.subarray(head + 6, dataStart),
    Buffer.from([0x54, ...new Uint8Array(new Int32Array([pixels.length]).buffer)]), pixels,
    official.subarray(dataStart + 5 + 40 * CIFAR_PIXELS),
  ]);
  const data = parseCifarPickle(big, 'big');
  expect(data.count).toBe(10000);
  expect(Buffer.from(data.pixels).equals(pixels)).toBe(true);
  expect(data.labels[9999]).toBe(binTrain.labels[9999 % 40]);
});
