import { readFileSync } from 'node:fs';
import { BufferReader, NameRegistry, Parser } from 'pickleparser';
import { CIFAR_CLASSES, CIFAR_PIXELS, sharedUint8Array, type CifarData } from './cifar.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';

/*
CIFAR-10 python batches (cifar-10-batches-py): each file is a pickled dict. The official files were
written by Python 2's cPickle at protocol 2, so every key and string is a Python 2 str (bytes to
Python 3: b'data', b'labels', b'batch_label', b'filenames'); `data` is a numpy uint8 ndarray
[N, 3072] (rows are records, each 1024 red, 1024 green, 1024 blue bytes, the binary layout's pixel
order), pickled as numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') followed by BUILD with
the state (1, shape, dtype, is_fortran, raw bytes); `labels` is a list of ints; batches.meta holds
`label_names`. Python 3 users re-save them with str keys at protocols 2-5; numpy then pickles at
protocol 5 as numpy.core.numeric._frombuffer(buffer, dtype, shape, order) with the bytes in-band.

The opcodes are left to pickleparser (every protocol 0-5 opcode); we give it
- a reader that decodes Python 2 str as latin1 (what Python 3's pickle.load(encoding='latin1') does),
  so the 30 MB pixel string maps back to its exact bytes. pickleparser's own reader uses
  TextDecoder('ascii'), which the Encoding standard defines as windows-1252: bytes 0x80-0x9f
  become other code points (0x80 is U+20AC) in browsers and Node <= 20.18.2; later Node versions
  decode it as latin1 by mistake (nodejs/node#60888), so the pixels would depend on the Node version;
- a name registry for the few numpy and codecs globals CIFAR pickles call, which builds inert
  descriptions ({ dtype, shape, bytes }) instead of running anything. Any other global stays
  pickleparser's inert placeholder object, so a hostile pickle cannot run code here.

Pixels stay bytes: the ndarray's bytes are a view (protocols 3-5) or one latin1 round trip (protocol
2), copied once into a plain Uint8Array; no per-pixel JS values.
*/

/** The official python files' key for the pixel array, labels and class names. */
const DATA_KEY = 'data';
const LABELS_KEY = 'labels';
const NAMES_KEY = 'label_names';

interface NumpyDtype {
  readonly kind: 'dtype';
  /** numpy's type code, e.g. 'u1' (uint8) or 'i8' (int64). */
  readonly code: string;
  /** '|' (not applicable), '<', '>' or '='; set by BUILD. */
  byteOrder: string;
  __setstate__(state: unknown): void;
}

interface NumpyArray {
  readonly kind: 'ndarray';
  dtype: NumpyDtype | null;
  shape: number[];
  fortran: boolean;
  /** The raw element bytes; null until BUILD for _reconstruct. */
  bytes: Uint8Array | null;
  __setstate__(state: unknown): void;
}

function isNumpyArray(value: unknown): value is NumpyArray {
  return typeof value === 'object' && value !== null && (value as NumpyArray).kind === 'ndarray';
}

/** A latin1 string's bytes (one per char) in a plain Uint8Array of its own (not a pooled Buffer). */
function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  Buffer.from(out.buffer).write(text, 'latin1');
  return out;
}

/** Python 2 str and Python 3 bytes both arrive here as latin1 text or bytes; bytes are what numpy wants. */
function asBytes(raw: unknown): Uint8Array | null {
  if (raw instanceof Uint8Array) return raw;
  if (typeof raw === 'string') return latin1Bytes(raw);
  return null;
}

function numpyDtype(code: unknown): NumpyDtype {
  return {
    kind: 'dtype',
    code: String(code),
    byteOrder: '|',
    __setstate__(state: unknown) {
      // (version, byte order, subarray, names, fields, elsize, alignment, flags)
      if (Array.isArray(state) && typeof state[1] === 'string') this.byteOrder = state[1];
    },
  };
}

function numpyArray(dtype: NumpyDtype | null, shape: number[], fortran: boolean, bytes: Uint8Array | null): NumpyArray {
  return {
    kind: 'ndarray',
    dtype,
    shape,
    fortran,
    bytes,
    __setstate__(state: unknown) {
      // (version, shape, dtype, is_fortran, raw data), or without the version (numpy < 1.0).
      const fields = Array.isArray(state) ? (state.length === 5 ? state.slice(1) : state) : [];
      this.shape = Array.isArray(fields[0]) ? fields[0] : [];
      this.dtype = (fields[1] as NumpyDtype | undefined)?.kind === 'dtype' ? (fields[1] as NumpyDtype) : null;
      this.fortran = fields[2] === true || fields[2] === 1;
      this.bytes = asBytes(fields[3]);
    },
  };
}

function numpyNames(): NameRegistry {
  const registry = new NameRegistry();
  const reconstruct = () => numpyArray(null, [], false, null);
  const frombuffer = (buffer: unknown, dtype: unknown, shape: unknown, order: unknown) =>
    numpyArray((dtype as NumpyDtype)?.kind === 'dtype' ? (dtype as NumpyDtype) : null, Array.isArray(shape) ? shape : [], order === 'F', asBytes(buffer));
  // numpy 2 renamed numpy.core to numpy._core; pickles name whichever wrote them.
  for (const core of ['numpy.core', 'numpy._core']) {
    registry.register(`${core}.multiarray`, '_reconstruct', reconstruct);
    registry.register(`${core}.numeric`, '_frombuffer', frombuffer);
  }
  registry.register('numpy', 'dtype', numpyDtype);
  // Python 3 pickles bytes at protocol 2 as _codecs.encode(text, 'latin1').
  registry.register('_codecs', 'encode', (text: unknown, encoding: unknown) =>
    encoding === 'latin1' || encoding === 'latin-1' ? latin1Bytes(String(text)) : new Uint8Array(Buffer.from(String(text), 'utf8')),
  );
  return registry;
}

/** pickleparser's reader, but Python 2 str (its 'ascii' strings) decode as latin1: one char per byte. */
class Latin1Reader extends BufferReader {
  override string(size: number, encoding: Parameters<BufferReader['string']>[1]): string {
    if (encoding !== 'ascii') return super.string(size, encoding);
    const bytes = this.bytes(size);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
  }
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `'${value.length > 40 ? `${value.slice(0, 40)}…` : value}'`;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (isNumpyArray(value)) return `a numpy ${value.dtype ? `'${value.dtype.code}'` : 'untyped'} array of shape [${value.shape.join(', ')}]`;
  if (value instanceof Uint8Array) return `bytes(${value.length})`;
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (value instanceof Map) return 'a dict';
  const name = (value as { __module__?: string; __name__?: string }).__name__;
  return name ? `a ${(value as { __module__?: string }).__module__}.${name} object` : typeof value;
}

/** Unpickles `bytes` into a dict with string keys; any failure becomes one CifarFormatError naming `source`. */
function unpickleDict(op: string, bytes: Uint8Array, source: string): Map<string, unknown> {
  if (!(bytes instanceof Uint8Array)) throw new TrainerArgumentError(op, 'bytes', 'a Uint8Array or Buffer', describe(bytes));
  let value: unknown;
  try {
    const parser = new Parser({ nameResolver: numpyNames(), unpicklingTypeOfDictionary: 'Map' });
    value = parser.read(new Latin1Reader(bytes));
  } catch (error) {
    throw new CifarFormatError(op, 'pickle', 'a complete pickle (protocol 2-5)', `a truncated or corrupt pickle (${(error as Error).message})`, source, null);
  }
  if (!(value instanceof Map)) throw new CifarFormatError(op, 'pickle', 'a pickled dict', describe(value), source, null);
  const dict = new Map<string, unknown>();
  for (const [key, entry] of value) {
    const text = key instanceof Uint8Array ? Buffer.from(key).toString('latin1') : String(key);
    dict.set(text, entry);
  }
  return dict;
}

function entry(op: string, dict: Map<string, unknown>, key: string, expected: string, source: string): unknown {
  if (!dict.has(key))
    throw new CifarFormatError(op, 'pickle keys', `a dict with '${key}' (${expected})`, `keys ${[...dict.keys()].map((k) => `'${k}'`).join(', ') || 'none'}`, source, null);
  return dict.get(key);
}

const INTEGER_CODES: Readonly<Record<string, { size: number; read: (view: DataView, offset: number, little: boolean) => number }>> = {
  u1: { size: 1, read: (v, o) => v.getUint8(o) },
  i1: { size: 1, read: (v, o) => v.getInt8(o) },
  u2: { size: 2, read: (v, o, l) => v.getUint16(o, l) },
  i2: { size: 2, read: (v, o, l) => v.getInt16(o, l) },
  u4: { size: 4, read: (v, o, l) => v.getUint32(o, l) },
  i4: { size: 4, read: (v, o, l) => v.getInt32(o, l) },
  u8: { size: 8, read: (v, o, l) => Number(v.getBigUint64(o, l)) },
  i8: { size: 8, read: (v, o, l) => Number(v.getBigInt64(o, l)) },
};

/** Labels as the official list of ints, or as a 1-D integer ndarray (some re-saves). */
function decodeLabels(op: string, raw: unknown, count: number, source: string): Uint8Array {
  const expected = `a list of ${count} ints in 0..${CIFAR_CLASSES - 1} (one per data row)`;
  let values: ArrayLike<unknown>;
  if (Array.isArray(raw)) {
    values = raw;
  } else if (isNumpyArray(raw) && raw.dtype && INTEGER_CODES[raw.dtype.code] && raw.bytes && raw.shape.length === 1) {
    const { size, read } = INTEGER_CODES[raw.dtype.code];
    if (raw.bytes.length !== raw.shape[0] * size) throw new CifarFormatError(op, 'labels', expected, `${describe(raw)} with ${raw.bytes.length} bytes`, source, null);
    const view = new DataView(raw.bytes.buffer, raw.bytes.byteOffset, raw.bytes.length);
    values = Array.from({ length: raw.shape[0] }, (_, i) => read(view, i * size, raw.dtype!.byteOrder !== '>'));
  } else {
    throw new CifarFormatError(op, 'labels', expected, describe(raw), source, null);
  }
  if (values.length !== count) throw new CifarFormatError(op, 'labels', expected, `${values.length} labels`, source, null);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const label = values[i];
    if (typeof label !== 'number' || !Number.isInteger(label) || label < 0 || label >= CIFAR_CLASSES)
      throw new CifarFormatError(op, 'label', `an int in 0..${CIFAR_CLASSES - 1}`, describe(label), source, i);
    labels[i] = label;
  }
  return labels;
}

/**
 * Parses one CIFAR-10 python batch (a pickled dict with `data`, a numpy uint8 [N, 3072] array, and
 * `labels`). `source` names the buffer in errors. The pixels are a copy: `bytes` is not kept.
 */
export function parseCifarPickle(bytes: Uint8Array, source = '<buffer>'): CifarData {
  return decodePickleBatch('parseCifarPickle', bytes, source);
}

function decodePickleBatch(op: string, bytes: Uint8Array, source: string): CifarData {
  const dict = unpickleDict(op, bytes, source);
  const data = entry(op, dict, DATA_KEY, `a numpy uint8 array [N, ${CIFAR_PIXELS}]`, source);
  const rawLabels = entry(op, dict, LABELS_KEY, 'a list of ints', source);
  const expected = `a numpy uint8 array of shape [N, ${CIFAR_PIXELS}] (C order) with N ≥ 1`;
  if (!isNumpyArray(data) || data.dtype?.code !== 'u1' || data.shape.length !== 2 || data.shape[1] !== CIFAR_PIXELS || !Number.isInteger(data.shape[0]) || data.shape[0] < 1 || data.fortran)
    throw new CifarFormatError(op, 'data', expected, `${describe(data)}${isNumpyArray(data) && data.fortran ? ' in Fortran order' : ''}`, source, null);
  const count = data.shape[0];
  if (!data.bytes || data.bytes.length !== count * CIFAR_PIXELS)
    throw new CifarFormatError(op, 'data', `${count} × ${CIFAR_PIXELS} = ${count * CIFAR_PIXELS} bytes`, data.bytes ? `${data.bytes.length} bytes` : 'no bytes', source, null);
  const labels = decodeLabels(op, rawLabels, count, source);
  // Protocol 3-5 bytes are (Buffer) views into `bytes`: copy them, onto shared memory as the binary
  // reader's (data-threads.ts). Protocol 2 ones already are a fresh array (latin1Bytes).
  const pixels = data.bytes.buffer === bytes.buffer ? sharedCopy(data.bytes) : data.bytes;
  return { count, pixels, labels, sources: [source] };
}

function sharedCopy(bytes: Uint8Array): Uint8Array {
  const copy = sharedUint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

/** Reads and parses one python batch file (data_batch_<n> or test_batch of cifar-10-batches-py). */
export function readCifarPickleBatch(path: string): CifarData {
  const op = 'readCifarPickleBatch';
  return decodePickleBatch(op, readInput(op, path), path);
}

/** Class names by label from a pickled batches.meta (its `label_names`); there must be exactly 10. */
export function parseCifarPickleMeta(bytes: Uint8Array, source = '<buffer>'): string[] {
  return decodePickleMeta('parseCifarPickleMeta', bytes, source);
}

function decodePickleMeta(op: string, bytes: Uint8Array, source: string): string[] {
  const dict = unpickleDict(op, bytes, source);
  const names = entry(op, dict, NAMES_KEY, `a list of ${CIFAR_CLASSES} class names`, source);
  const expected = `a list of ${CIFAR_CLASSES} non-empty strings`;
  if (!Array.isArray(names) || names.length !== CIFAR_CLASSES) throw new CifarFormatError(op, NAMES_KEY, expected, describe(names), source, null);
  return names.map((name, i) => {
    const text = name instanceof Uint8Array ? Buffer.from(name).toString('utf8') : name;
    if (typeof text !== 'string' || text.trim() === '') throw new CifarFormatError(op, `${NAMES_KEY}[${i}]`, 'a non-empty string', describe(text), source, null);
    return text.trim();
  });
}

/** Reads class names from a batches.meta file of cifar-10-batches-py. */
export function readCifarPickleClassNames(path: string): string[] {
  const op = 'readCifarPickleClassNames';
  return decodePickleMeta(op, readInput(op, path), path);
}

function readInput(op: string, path: string): Buffer {
  if (typeof path !== 'string' || path === '') throw new TrainerArgumentError(op, 'path', 'a file path', describe(path));
  try {
    return readFileSync(path);
  } catch (error) {
    throw new TrainerArgumentError(op, 'path', 'an existing, readable file', `'${path}' (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}
