import { unzipSync, zipSync } from 'fflate';
import { columnMajorToRowMajor, sizeOf, type FileValue, type NamedValues } from './arrays.js';

/*
NumPy's .npy and .npz, as much as gradient files need (numpy/lib/format.py describes the format):

  .npy: "\x93NUMPY", version (major, minor), header length (uint16 LE in 1.0, uint32 in 2.0/3.0),
        then a Python dict literal {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
        padded with spaces to a multiple of 64 bytes and ending in '\n', then the raw data.
  .npz: a zip archive of NAME.npy files (np.savez stores them, np.savez_compressed deflates them).

Written: version 1.0, '<f8' (C order) for numbers, '<U<n>' (UTF-32LE) for text, so np.load needs no
pickle. Read: versions 1.0–3.0, little/big-endian float16/32/64, signed/unsigned integers, bool, '<U'
text, C and Fortran order. Anything else (object arrays, structured dtypes) is an error naming the entry.
*/

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

export class NpyFormatError extends Error {
  override readonly name = 'NpyFormatError';
}

function header(descr: string, shape: readonly number[]): Uint8Array {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - 10 - 1, ' ') + '\n';
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, dict.length, true);
  out.set(Buffer.from(dict, 'latin1'), 10);
  return out;
}

/** One .npy file: float64 C-order data, or a 0-d unicode string. */
export function encodeNpy(value: FileValue): Uint8Array {
  if (value.kind === 'text') {
    const chars = Array.from(value.text);
    const width = Math.max(1, chars.length);
    const head = header(`<U${width}`, []);
    const body = new Uint8Array(width * 4);
    const view = new DataView(body.buffer);
    chars.forEach((c, i) => view.setUint32(i * 4, c.codePointAt(0)!, true));
    return concat(head, body);
  }
  const head = header('<f8', value.shape);
  const body = new Uint8Array(value.data.length * 8);
  const view = new DataView(body.buffer);
  value.data.forEach((v, i) => view.setFloat64(i * 8, v, true));
  return concat(head, body);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

interface Dtype {
  readonly size: number;
  readonly read: (view: DataView, offset: number) => number;
}

function numericDtype(descr: string): Dtype | null {
  const m = /^([<>|=])([fiub])(\d+)$/.exec(descr);
  if (!m) return null;
  const little = m[1] !== '>';
  const size = Number(m[3]);
  const kind = m[2];
  const readers: Record<string, ((v: DataView, o: number) => number) | undefined> = {
    f2: (v, o) => float16(v.getUint16(o, little)),
    f4: (v, o) => v.getFloat32(o, little),
    f8: (v, o) => v.getFloat64(o, little),
    i1: (v, o) => v.getInt8(o),
    i2: (v, o) => v.getInt16(o, little),
    i4: (v, o) => v.getInt32(o, little),
    i8: (v, o) => Number(v.getBigInt64(o, little)),
    u1: (v, o) => v.getUint8(o),
    u2: (v, o) => v.getUint16(o, little),
    u4: (v, o) => v.getUint32(o, little),
    u8: (v, o) => Number(v.getBigUint64(o, little)),
    b1: (v, o) => v.getUint8(o),
  };
  const read = readers[`${kind}${size}`];
  return read ? { size, read } : null;
}

function float16(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Parses one .npy file; `name` is used in errors. */
export function decodeNpy(bytes: Uint8Array, name: string): FileValue {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new NpyFormatError(`${name} is not a .npy array (no \\x93NUMPY magic)`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLength: number;
  let start: number;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLength = view.getUint32(8, true);
    start = 12;
  } else {
    throw new NpyFormatError(`${name}: .npy version ${major}.${bytes[7]} is not supported (1.0 to 3.0 are)`);
  }
  if (start + headerLength > bytes.length) throw new NpyFormatError(`${name}: truncated .npy header`);
  const dict = Buffer.from(bytes.buffer, bytes.byteOffset + start, headerLength).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(dict)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(dict)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(dict)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new NpyFormatError(`${name}: unreadable .npy header ${JSON.stringify(dict.trim())}`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new NpyFormatError(`${name}: bad shape (${shapeText}) in the .npy header`);
  const count = sizeOf(shape);
  const body = start + headerLength;
  const unicode = /^[<>|=]U(\d+)$/.exec(descr);
  if (unicode) {
    if (count !== 1) throw new NpyFormatError(`${name}: a text array of shape (${shapeText}); only single strings are read`);
    const width = Number(unicode[1]);
    const little = !descr.startsWith('>');
    let out = '';
    for (let i = 0; i < width; i++) {
      if (body + i * 4 + 4 > bytes.length) throw new NpyFormatError(`${name}: truncated .npy data`);
      const code = view.getUint32(body + i * 4, little);
      if (code === 0) break;
      out += String.fromCodePoint(code);
    }
    return { kind: 'text', text: out };
  }
  const dtype = numericDtype(descr);
  if (!dtype)
    throw new NpyFormatError(`${name}: dtype '${descr}' is not supported (numbers: float, int, uint or bool${descr.includes('O') ? '; object arrays need pickle, save numbers' : ''})`);
  if (body + count * dtype.size > bytes.length) throw new NpyFormatError(`${name}: truncated .npy data (${count} values of '${descr}' expected)`);
  const values = new Float64Array(count);
  for (let i = 0; i < count; i++) values[i] = dtype.read(view, body + i * dtype.size);
  const data = fortran === 'True' ? columnMajorToRowMajor(shape, values) : values;
  return { kind: 'array', shape, data };
}

/** An .npz archive (deflated, like np.savez_compressed) of the given entries. */
export function encodeNpz(values: NamedValues): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  for (const [name, value] of values) files[`${name}.npy`] = encodeNpy(value);
  return zipSync(files, { level: 6 });
}

/** The entries of an .npz archive by name (the .npy suffix dropped), in archive order. */
export function decodeNpz(bytes: Uint8Array, source: string): NamedValues {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (error) {
    throw new NpyFormatError(`not an .npz (zip) archive: ${(error as Error).message}`);
  }
  const out: NamedValues = new Map();
  for (const [path, data] of Object.entries(files)) {
    if (!path.endsWith('.npy')) continue;
    const name = path.slice(0, -4);
    out.set(name, decodeNpy(data, `${source}:${name}`));
  }
  return out;
}
