import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import { CIFAR_CLASSES, CIFAR_PIXELS, sharedUint8Array, type CifarData } from './cifar.js';
import { CifarFormatError, TrainerArgumentError } from './errors.js';

/*
CIFAR-10 MATLAB batches (cifar-10-batches-mat): MAT-files (Level 5, MATLAB -v6/-v7) holding
`data`, uint8 N × 3072 (a row per record, the binary layout's pixel order), `labels`, uint8 N × 1,
and `batch_label`, char; batches.meta.mat holds `label_names`, a cell array of char.

Level 5: a 128-byte header (116 bytes of text, 8 of subsystem offset, version 0x0100, and 'IM' or
'MI', which says the byte order), then data elements. An element is an 8-byte tag (type, byte
count) and its data padded to 8 bytes, or, when the count fits in the tag's upper 16 bits, a
"small element" of tag and up to 4 data bytes in 8 bytes. miCOMPRESSED holds one zlib-compressed
element (MATLAB's default); miMATRIX holds array flags (class), dimensions, name, then the real part
(numeric, char) or one miMATRIX per element (cell). Arrays are column-major, and numbers may be
stored in a smaller type than their class (MATLAB writes a double 3 as one miUINT8 byte).

No library: mat-for-js (the npm package for Level 5) is GPL-3.0 (this project is MIT), has had one
release, and turns every element into nested JS arrays of numbers (30 M JS values per official
file). This parser reads only what CIFAR needs: numeric classes (uint8 data stays bytes; other types
become float64), char and cell; anything else (struct, sparse, complex, v7.3/HDF5) is a clear error.
*/

const MI = { INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9, INT64: 12, UINT64: 13, MATRIX: 14, COMPRESSED: 15, UTF8: 16, UTF16: 17, UTF32: 18 } as const;

/** Bytes per element and a reader, by numeric storage type. */
const NUMERIC_TYPES: Readonly<Record<number, { size: number; read: (view: DataView, offset: number, little: boolean) => number }>> = {
  [MI.INT8]: { size: 1, read: (v, o) => v.getInt8(o) },
  [MI.UINT8]: { size: 1, read: (v, o) => v.getUint8(o) },
  [MI.INT16]: { size: 2, read: (v, o, l) => v.getInt16(o, l) },
  [MI.UINT16]: { size: 2, read: (v, o, l) => v.getUint16(o, l) },
  [MI.INT32]: { size: 4, read: (v, o, l) => v.getInt32(o, l) },
  [MI.UINT32]: { size: 4, read: (v, o, l) => v.getUint32(o, l) },
  [MI.SINGLE]: { size: 4, read: (v, o, l) => v.getFloat32(o, l) },
  [MI.DOUBLE]: { size: 8, read: (v, o, l) => v.getFloat64(o, l) },
  [MI.INT64]: { size: 8, read: (v, o, l) => Number(v.getBigInt64(o, l)) },
  [MI.UINT64]: { size: 8, read: (v, o, l) => Number(v.getBigUint64(o, l)) },
};

/** MATLAB array classes by their mxCLASS number (1-15). */
const CLASS_NAMES = ['', 'cell', 'struct', 'object', 'char', 'sparse', 'double', 'single', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64'] as const;
export type MatClass = Exclude<(typeof CLASS_NAMES)[number], ''>;

/** One MATLAB array as far as CIFAR needs: numeric, char or cell. */
export interface MatVariable {
  readonly name: string;
  readonly className: MatClass;
  readonly dims: readonly number[];
  /** Numeric classes: the real part, column-major; a Uint8Array view when stored as bytes, else float64. */
  readonly values: Uint8Array | Float64Array | null;
  /** char: the characters, column-major (a 1 × n row is the string itself). */
  readonly text: string | null;
  /** cell: the elements, column-major. */
  readonly cells: readonly MatVariable[] | null;
}

/** Parse state: the file's byte order, and who to blame in errors. */
interface Context {
  readonly op: string;
  readonly source: string;
  readonly little: boolean;
}

function fail(ctx: Context, argument: string, expected: string, actual: string): never {
  throw new CifarFormatError(ctx.op, argument, expected, actual, ctx.source, null);
}

interface Element {
  readonly type: number;
  readonly data: Uint8Array;
  /** Offset of the next element in the same buffer. */
  readonly next: number;
}

function readElement(ctx: Context, bytes: Uint8Array, offset: number): Element {
  if (offset + 8 > bytes.length) fail(ctx, 'data element', 'an 8-byte tag', `${bytes.length - offset} bytes at offset ${offset} (truncated file)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const first = view.getUint32(offset, ctx.little);
  if (first >>> 16 !== 0) {
    // Small element: byte count in the upper 16 bits, type in the lower, data in the next 4 bytes.
    const size = first >>> 16;
    if (size > 4) fail(ctx, 'small data element', 'at most 4 bytes', `${size} bytes at offset ${offset}`);
    return { type: first & 0xffff, data: bytes.subarray(offset + 4, offset + 4 + size), next: offset + 8 };
  }
  const size = view.getUint32(offset + 4, ctx.little);
  const start = offset + 8;
  if (start + size > bytes.length) fail(ctx, 'data element', `${size} bytes of data at offset ${start}`, `${bytes.length - start} bytes (truncated file)`);
  // Compressed elements are not padded; all others are padded to a multiple of 8 bytes.
  const next = first === MI.COMPRESSED ? start + size : start + Math.ceil(size / 8) * 8;
  return { type: first, data: bytes.subarray(start, start + size), next };
}

function subElement(ctx: Context, bytes: Uint8Array, offset: number, what: string, types: readonly number[]): Element {
  if (offset >= bytes.length) fail(ctx, what, 'present in the array', 'the array ends before it');
  const element = readElement(ctx, bytes, offset);
  if (!types.includes(element.type)) fail(ctx, what, `data type ${types.join(' or ')}`, `type ${element.type}`);
  return element;
}

function numericValues(ctx: Context, element: Element, count: number, name: string): Uint8Array | Float64Array {
  const type = NUMERIC_TYPES[element.type];
  if (!type) fail(ctx, `variable '${name}'`, 'numeric data (miINT8 … miUINT64, miSINGLE, miDOUBLE)', `data type ${element.type}`);
  if (element.data.length !== count * type.size) fail(ctx, `variable '${name}'`, `${count} elements (${count * type.size} bytes)`, `${element.data.length} bytes`);
  if (element.type === MI.UINT8) return element.data;
  const view = new DataView(element.data.buffer, element.data.byteOffset, element.data.length);
  const values = new Float64Array(count);
  for (let i = 0; i < count; i++) values[i] = type.read(view, i * type.size, ctx.little);
  return values;
}

function charText(ctx: Context, element: Element, name: string): string {
  const { data } = element;
  switch (element.type) {
    case MI.UTF8:
    case MI.INT8:
    case MI.UINT8:
      return Buffer.from(data.buffer, data.byteOffset, data.length).toString(element.type === MI.UTF8 ? 'utf8' : 'latin1');
    case MI.UINT16:
    case MI.UTF16: {
      const view = new DataView(data.buffer, data.byteOffset, data.length);
      let text = '';
      for (let i = 0; i + 1 < data.length; i += 2) text += String.fromCharCode(view.getUint16(i, ctx.little));
      return text;
    }
    default:
      return fail(ctx, `variable '${name}'`, 'characters (miUTF8, miUINT16 or miUTF16)', `data type ${element.type}`);
  }
}

/** The contents of an miMATRIX element: flags, dimensions, name, then the class's data. */
function parseMatrix(ctx: Context, bytes: Uint8Array, outer: string): MatVariable {
  // An empty miMATRIX (MATLAB writes them for empty cells) is a 0 × 0 double.
  if (bytes.length === 0) return { name: '', className: 'double', dims: [0, 0], values: new Float64Array(0), text: null, cells: null };
  const flags = subElement(ctx, bytes, 0, `array flags in ${outer}`, [MI.UINT32]);
  const flagWord = new DataView(flags.data.buffer, flags.data.byteOffset, 4).getUint32(0, ctx.little);
  const classNumber = flagWord & 0xff;
  const complex = (flagWord & 0x800) !== 0;
  const dimsElement = subElement(ctx, bytes, flags.next, `dimensions in ${outer}`, [MI.INT32]);
  const dimsView = new DataView(dimsElement.data.buffer, dimsElement.data.byteOffset, dimsElement.data.length);
  const dims = Array.from({ length: dimsElement.data.length / 4 }, (_, i) => dimsView.getInt32(i * 4, ctx.little));
  const nameElement = subElement(ctx, bytes, dimsElement.next, `array name in ${outer}`, [MI.INT8]);
  const name = Buffer.from(nameElement.data).toString('latin1') || outer;
  const count = dims.reduce((a, b) => a * b, 1);
  const className = CLASS_NAMES[classNumber] || undefined;
  const base = { name, dims, values: null, text: null, cells: null };
  if (className === 'cell') {
    const cells: MatVariable[] = [];
    let offset = nameElement.next;
    for (let i = 0; i < count; i++) {
      const cell = subElement(ctx, bytes, offset, `${name}{${i + 1}}`, [MI.MATRIX]);
      cells.push(parseMatrix(ctx, cell.data, `${name}{${i + 1}}`));
      offset = cell.next;
    }
    return { ...base, className, cells };
  }
  if (className === 'char') {
    if (count === 0) return { ...base, className, text: '' };
    const real = subElement(ctx, bytes, nameElement.next, `characters of '${name}'`, [MI.UTF8, MI.UINT16, MI.UTF16, MI.INT8, MI.UINT8]);
    return { ...base, className, text: charText(ctx, real, name) };
  }
  if (className === undefined || className === 'struct' || className === 'object' || className === 'sparse')
    fail(ctx, `variable '${name}'`, 'a numeric, char or cell array', `MATLAB class ${className ? `'${className}'` : classNumber} (not supported)`);
  if (complex) fail(ctx, `variable '${name}'`, 'a real array', 'a complex array');
  if (count === 0) return { ...base, className, values: new Float64Array(0) };
  const real = readElement(ctx, bytes, nameElement.next);
  return { ...base, className, values: numericValues(ctx, real, count, name) };
}

function parseMatVariables(op: string, bytes: Uint8Array, source: string): Map<string, MatVariable> {
  if (!(bytes instanceof Uint8Array)) throw new TrainerArgumentError(op, 'bytes', 'a Uint8Array or Buffer', typeof bytes);
  const header = { op, source, little: true };
  if (bytes.length < 128) fail(header, 'header', 'a 128-byte MAT-file header', `${bytes.length} bytes`);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, 116).toString('latin1');
  const indicator = String.fromCharCode(bytes[126], bytes[127]);
  const hdf5 = bytes.length >= 520 && Buffer.from(bytes.buffer, bytes.byteOffset + 512, 8).equals(Buffer.from('\x89HDF\r\n\x1a\n', 'latin1'));
  if (text.startsWith('MATLAB 7.3') || hdf5)
    fail(header, 'MAT-file version', 'a Level 5 MAT-file (MATLAB -v6 or -v7)', 'MATLAB v7.3 (HDF5) files are not supported; save with -v7 or -v6');
  if (indicator !== 'IM' && indicator !== 'MI')
    fail(header, 'header', "a MAT-file (Level 5) header ending in 'IM' or 'MI'", `'${text.slice(0, 20).replace(/[^\x20-\x7e]/g, '.')}…' ending in '${indicator.replace(/[^\x20-\x7e]/g, '.')}'`);
  const ctx = { op, source, little: indicator === 'IM' };
  const version = new DataView(bytes.buffer, bytes.byteOffset + 124, 2).getUint16(0, ctx.little);
  if (version !== 0x0100) fail(ctx, 'MAT-file version', '0x0100 (Level 5)', `0x${version.toString(16).padStart(4, '0')}`);
  const variables = new Map<string, MatVariable>();
  for (let offset = 128; offset < bytes.length; ) {
    let element = readElement(ctx, bytes, offset);
    offset = element.next;
    if (element.type === MI.COMPRESSED) {
      let inflated: Uint8Array;
      try {
        inflated = inflateSync(element.data);
      } catch (error) {
        return fail(ctx, 'compressed element', 'zlib data', `a corrupt stream (${(error as Error).message})`);
      }
      element = readElement(ctx, inflated, 0);
    }
    if (element.type !== MI.MATRIX) fail(ctx, 'data element', `an array (miMATRIX, type ${MI.MATRIX})`, `type ${element.type}`);
    const variable = parseMatrix(ctx, element.data, `variable at offset ${offset}`);
    variables.set(variable.name, variable);
  }
  return variables;
}

/**
 * The variables of a MAT-file (Level 5, as MATLAB -v6/-v7 and scipy.io.savemat write it), by name.
 * Supports numeric, char and cell arrays; anything else is a CifarFormatError naming `source`.
 */
export function parseMatFile(bytes: Uint8Array, source = '<buffer>'): Map<string, MatVariable> {
  return parseMatVariables('parseMatFile', bytes, source);
}

function variable(ctx: Context, variables: Map<string, MatVariable>, name: string, expected: string): MatVariable {
  const found = variables.get(name);
  if (!found) fail(ctx, 'MAT variables', `a variable '${name}' (${expected})`, `variables ${[...variables.keys()].map((k) => `'${k}'`).join(', ') || 'none'}`);
  return found;
}

/** Column-major rows × cols to row-major, 64 columns at a time (64 sequential read streams, whole written lines). */
function transposeToRows(values: Uint8Array | Float64Array, rows: number, cols: number): Uint8Array {
  const out = sharedUint8Array(rows * cols);
  for (let j0 = 0; j0 < cols; j0 += 64) {
    const j1 = Math.min(cols, j0 + 64);
    for (let i = 0; i < rows; i++) {
      const row = i * cols;
      for (let j = j0; j < j1; j++) out[row + j] = values[j * rows + i];
    }
  }
  return out;
}

function decodeMatBatch(op: string, bytes: Uint8Array, source: string): CifarData {
  const variables = parseMatVariables(op, bytes, source);
  const ctx = { op, source, little: true };
  const expected = `a uint8 (or integer-valued numeric) matrix of size N × ${CIFAR_PIXELS} with N ≥ 1`;
  const data = variable(ctx, variables, 'data', expected);
  if (!data.values || data.dims.length !== 2 || data.dims[1] !== CIFAR_PIXELS || data.dims[0] < 1)
    fail(ctx, "variable 'data'", expected, `a ${data.className} array of size ${data.dims.join(' × ')}`);
  const count = data.dims[0];
  if (!(data.values instanceof Uint8Array)) {
    const bad = data.values.findIndex((v) => !(Number.isInteger(v) && v >= 0 && v <= 255));
    if (bad >= 0) throw new CifarFormatError(op, "variable 'data'", 'integers in 0..255', `${data.values[bad]} (column ${Math.floor(bad / count) + 1})`, source, bad % count);
  }
  const labelsVar = variable(ctx, variables, 'labels', `${count} labels, N × 1`);
  const values = labelsVar.values;
  if (!values || values.length !== count || labelsVar.dims.filter((d) => d !== 1).length > 1)
    fail(ctx, "variable 'labels'", `a numeric vector of ${count} labels (one per row of data)`, `a ${labelsVar.className} array of size ${labelsVar.dims.join(' × ')}`);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const label = values[i];
    if (!Number.isInteger(label) || label < 0 || label >= CIFAR_CLASSES)
      throw new CifarFormatError(op, 'label', `an integer in 0..${CIFAR_CLASSES - 1}`, String(label), source, i);
    labels[i] = label;
  }
  return { count, pixels: transposeToRows(data.values, count, CIFAR_PIXELS), labels, sources: [source] };
}

/**
 * Parses one CIFAR-10 MATLAB batch (`data` N × 3072, `labels` N × 1), transposing MATLAB's
 * column-major `data` into row-major records. `source` names the buffer in errors.
 */
export function parseCifarMat(bytes: Uint8Array, source = '<buffer>'): CifarData {
  return decodeMatBatch('parseCifarMat', bytes, source);
}

/** Reads and parses one MATLAB batch file (data_batch_<n>.mat or test_batch.mat). */
export function readCifarMatBatch(path: string): CifarData {
  const op = 'readCifarMatBatch';
  return decodeMatBatch(op, readInput(op, path), path);
}

function decodeMatMeta(op: string, bytes: Uint8Array, source: string): string[] {
  const ctx = { op, source, little: true };
  const names = variable(ctx, parseMatVariables(op, bytes, source), 'label_names', `a cell array of ${CIFAR_CLASSES} class names`);
  let list: string[];
  if (names.cells && names.cells.every((cell) => cell.text !== null && cell.dims[0] <= 1)) {
    list = names.cells.map((cell) => cell.text!);
  } else if (names.text !== null && names.dims.length === 2) {
    // A char matrix (one padded name per row), stored column-major.
    const [rows, cols] = names.dims;
    list = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => names.text![j * rows + i]).join(''));
  } else {
    return fail(ctx, "variable 'label_names'", 'a cell array of char rows (or a char matrix)', `a ${names.className} array of size ${names.dims.join(' × ')}`);
  }
  list = list.map((name) => name.trim());
  if (list.length !== CIFAR_CLASSES || list.some((name) => name === ''))
    fail(ctx, "variable 'label_names'", `${CIFAR_CLASSES} non-empty names`, `${list.length} names (${list.filter((n) => n === '').length} empty)`);
  return list;
}

/** Class names by label from batches.meta.mat (its `label_names`); there must be exactly 10. */
export function parseCifarMatMeta(bytes: Uint8Array, source = '<buffer>'): string[] {
  return decodeMatMeta('parseCifarMatMeta', bytes, source);
}

/** Reads class names from batches.meta.mat of cifar-10-batches-mat. */
export function readCifarMatClassNames(path: string): string[] {
  const op = 'readCifarMatClassNames';
  return decodeMatMeta(op, readInput(op, path), path);
}

function readInput(op: string, path: string): Buffer {
  if (typeof path !== 'string' || path === '') throw new TrainerArgumentError(op, 'path', 'a file path', typeof path === 'string' ? "''" : typeof path);
  try {
    return readFileSync(path);
  } catch (error) {
    throw new TrainerArgumentError(op, 'path', 'an existing, readable file', `'${path}' (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}
