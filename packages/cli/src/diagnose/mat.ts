import { parseMatFile, type MatVariable } from '@bnmlp/trainer';
import { columnMajorToRowMajor, rowMajorToColumnMajor, type FileValue, type NamedValues } from './arrays.js';

/*
MATLAB MAT-files, Level 5 (what `load` reads and `save -v7` writes; docs: "MAT-File Format",
MathWorks). Writing: a 128-byte header (text, subsystem offset, version 0x0100, 'IM' = little-endian),
then one uncompressed miMATRIX element per variable: array flags (miUINT32: class), dimensions
(miINT32), name (miINT8), and the real part: miDOUBLE for numbers, miUTF8 characters for text.
Every element's data is padded to 8 bytes. Arrays are column-major; a vector is written as a 1 × n
row (as scipy.io.savemat does), a scalar as 1 × 1. Plain variables only: no structs, cells or
compression, which every reader handles.

Reading goes through @bnmlp/trainer's parseMatFile (numeric, char and cell arrays; compressed
elements), so MATLAB's own `save` output reads too; a cell array `W` (DD2424 code keeps W{1}, W{2},
… in cells) becomes W1, W2, ….
*/

const MI_INT8 = 1;
const MI_INT32 = 5;
const MI_UINT32 = 6;
const MI_DOUBLE = 9;
const MI_MATRIX = 14;
const MI_UTF8 = 16;
const MX_CHAR = 4;
const MX_DOUBLE = 6;

function pad8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** One data element: 8-byte tag (type, byte count), data, zero padding to 8 bytes. */
function element(type: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + pad8(data.length));
  const view = new DataView(out.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, data.length, true);
  out.set(data, 8);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function matrix(name: string, classId: number, dims: readonly number[], real: Uint8Array, realType: number): Uint8Array {
  const flags = new Uint8Array(8);
  new DataView(flags.buffer).setUint32(0, classId, true);
  const dimBytes = new Uint8Array(dims.length * 4);
  dims.forEach((d, i) => new DataView(dimBytes.buffer).setInt32(i * 4, d, true));
  const body = concat([element(MI_UINT32, flags), element(MI_INT32, dimBytes), element(MI_INT8, Buffer.from(name, 'latin1')), element(realType, real)]);
  return element(MI_MATRIX, body);
}

/** MATLAB dimensions for a row-major shape: scalars 1 × 1, vectors 1 × n rows. */
function matDims(shape: readonly number[]): number[] {
  if (shape.length === 0) return [1, 1];
  if (shape.length === 1) return [1, shape[0]];
  return [...shape];
}

/** A Level 5 MAT-file holding each entry as a plain variable (doubles or char). */
export function encodeMat(values: NamedValues, description = 'bnmlp diagnose'): Uint8Array {
  const head = new Uint8Array(128);
  const text = `MATLAB 5.0 MAT-file, Platform: bnmlp, Created on: ${new Date().toUTCString()}, ${description}`.slice(0, 116).padEnd(116, ' ');
  head.set(Buffer.from(text, 'latin1'), 0);
  head.fill(0x20, 116, 124);
  new DataView(head.buffer).setUint16(124, 0x0100, true);
  head[126] = 'I'.charCodeAt(0);
  head[127] = 'M'.charCodeAt(0);
  const parts: Uint8Array[] = [head];
  for (const [name, value] of values) {
    if (value.kind === 'text') {
      // UTF-8 bytes (miUTF8), dimensions in characters: what scipy.io.savemat writes for non-ASCII text.
      parts.push(matrix(name, MX_CHAR, [1, Array.from(value.text).length], Buffer.from(value.text, 'utf8'), MI_UTF8));
      continue;
    }
    const dims = matDims(value.shape);
    const column = rowMajorToColumnMajor(value.shape, value.data);
    const real = new Uint8Array(column.length * 8);
    const view = new DataView(real.buffer);
    column.forEach((v, i) => view.setFloat64(i * 8, v, true));
    parts.push(matrix(name, MX_DOUBLE, dims, real, MI_DOUBLE));
  }
  return concat(parts);
}

function toValue(variable: MatVariable): FileValue | null {
  if (variable.text !== null) return { kind: 'text', text: variable.text };
  if (variable.values === null) return null;
  return { kind: 'array', shape: [...variable.dims], data: columnMajorToRowMajor(variable.dims, Float64Array.from(variable.values)) };
}

/**
 * The variables of a MAT-file (row-major, with MATLAB's dimensions). A cell array NAME of arrays
 * becomes NAME1, NAME2, … (1-based, as MATLAB indexes it). Struct variables are refused with the
 * way out (`save(file, '-struct', 'Grads')` saves the fields as variables).
 */
export function decodeMat(bytes: Uint8Array, source: string): NamedValues {
  let variables: Map<string, MatVariable>;
  try {
    variables = parseMatFile(bytes, source);
  } catch (error) {
    const message = (error as Error).message;
    if (/class 'struct'/.test(message))
      throw new Error(`${message}; save each gradient as its own variable, e.g. save('${source}', '-struct', 'Grads')`);
    throw error;
  }
  const out: NamedValues = new Map();
  for (const [name, variable] of variables) {
    if (variable.cells) {
      variable.cells.forEach((cell, i) => {
        const value = toValue(cell);
        if (value) out.set(`${name}${i + 1}`, value);
      });
      continue;
    }
    const value = toValue(variable);
    if (value) out.set(name, value);
  }
  return out;
}
