import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { type FileValue, type NamedValues } from './arrays.js';
import { DiagnoseInputError } from './errors.js';
import { decodeMat, encodeMat } from './mat.js';
import { decodeNpz, encodeNpz } from './npz.js';

/*
Case and gradient files in three formats, chosen by extension:
  .npz  numpy.savez(_compressed): one .npy per name (numpy.load(path)['W1'])
  .mat  MATLAB Level 5 (load(path)), plain variables (a cell array W counts as W1, W2, …)
  .json one object: names → numbers, strings, or nested lists (row-major: [[row 1], [row 2], …]);
        bare NaN/Infinity (Python's json.dump writes them) and null read as NaN/±Infinity/NaN.
*/

export const FILE_FORMATS = ['npz', 'mat', 'json'] as const;
export type FileFormat = (typeof FILE_FORMATS)[number];

export function formatOf(path: string): FileFormat | null {
  const ext = extname(path).toLowerCase().slice(1);
  return (FILE_FORMATS as readonly string[]).includes(ext) ? (ext as FileFormat) : null;
}

function jsonValue(value: FileValue): unknown {
  if (value.kind === 'text') return value.text;
  const { shape, data } = value;
  if (shape.length === 0) return data[0];
  const build = (dim: number, offset: number): unknown => {
    const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: shape[dim] }, (_, i) => (dim === shape.length - 1 ? data[offset + i] : build(dim + 1, offset + i * stride)));
  };
  return build(0, 0);
}

export function encodeJson(values: NamedValues): string {
  // One entry per line; non-finite numbers (never in a case, possible in tests) as Python's json.dump writes them.
  const lines = [...values].map(
    ([name, value]) => `  ${JSON.stringify(name)}: ${JSON.stringify(jsonValue(value), (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? `@@${v}@@` : v)).replace(/"@@(NaN|-?Infinity)@@"/g, '$1')}`,
  );
  return `{\n${lines.join(',\n')}\n}\n`;
}

/** Python's json.dump writes NaN, Infinity and -Infinity bare: turn them (outside strings) into JSON. */
function withNonFinite(textIn: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < textIn.length; i++) {
    const c = textIn[i];
    if (inString) {
      out += c;
      if (c === '\\') out += textIn[++i] ?? '';
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
      continue;
    }
    const rest = textIn.slice(i, i + 9);
    if (rest.startsWith('NaN')) {
      out += 'null';
      i += 2;
    } else if (rest.startsWith('-Infinity')) {
      out += '-1e999';
      i += 8;
    } else if (rest.startsWith('Infinity')) {
      out += '1e999';
      i += 7;
    } else out += c;
  }
  return out;
}

function fromJson(name: string, value: unknown, source: string): FileValue | null {
  if (typeof value === 'string') return { kind: 'text', text: value };
  if (typeof value === 'boolean') return { kind: 'array', shape: [], data: Float64Array.of(value ? 1 : 0) };
  if (typeof value === 'number' || value === null) return { kind: 'array', shape: [], data: Float64Array.of(value === null ? NaN : value) };
  if (!Array.isArray(value)) return null;
  const shape: number[] = [];
  for (let v: unknown = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  const data: number[] = [];
  const walk = (v: unknown, dim: number, path: string): void => {
    if (dim === shape.length) {
      if (typeof v === 'number' || v === null) data.push(v === null ? NaN : v);
      else throw new DiagnoseInputError(source, `'${name}' has a non-number ${JSON.stringify(v)} at ${path || '[]'}`);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[dim])
      throw new DiagnoseInputError(source, `'${name}' is a ragged nested list: ${path || 'the top level'} should have ${shape[dim]} entries like the first one, not ${Array.isArray(v) ? v.length : 'a number'}`);
    v.forEach((x, i) => walk(x, dim + 1, `${path}[${i}]`));
  };
  walk(value, 0, '');
  return { kind: 'array', shape, data: Float64Array.from(data) };
}

export function decodeJson(textIn: string, source: string): NamedValues {
  let parsed: unknown;
  try {
    parsed = JSON.parse(withNonFinite(textIn));
  } catch (error) {
    throw new DiagnoseInputError(source, `not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new DiagnoseInputError(source, 'a JSON file must hold one object: {"W1": [[...], ...], "b1": [...], ...}');
  const out: NamedValues = new Map();
  for (const [name, value] of Object.entries(parsed)) {
    const converted = fromJson(name, value, source);
    if (converted) out.set(name, converted);
  }
  return out;
}

export function encodeFile(format: FileFormat, values: NamedValues): Uint8Array {
  switch (format) {
    case 'npz':
      return encodeNpz(values);
    case 'mat':
      return encodeMat(values);
    case 'json':
      return Buffer.from(encodeJson(values), 'utf8');
  }
}

export function decodeFile(format: FileFormat, bytes: Uint8Array, source: string): NamedValues {
  try {
    switch (format) {
      case 'npz':
        return decodeNpz(bytes, source);
      case 'mat':
        return decodeMat(bytes, source);
      case 'json':
        return decodeJson(Buffer.from(bytes).toString('utf8'), source);
    }
  } catch (error) {
    if (error instanceof DiagnoseInputError) throw error;
    throw new DiagnoseInputError(source, `unreadable as a .${format} file: ${(error as Error).message}`);
  }
}

/** Reads a file by its extension; every failure is a DiagnoseInputError naming the file. */
export function readNamedValues(path: string, shown = path): NamedValues {
  const format = formatOf(path);
  if (!format) throw new DiagnoseInputError(shown, `unknown file type '${extname(path) || '(none)'}': use .npz, .mat or .json`);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DiagnoseInputError(shown, code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? (error as Error).message})`);
  }
  return decodeFile(format, bytes, shown);
}

export function writeNamedValues(path: string, values: NamedValues): void {
  const format = formatOf(path);
  if (!format) throw new DiagnoseInputError(path, `unknown file type '${extname(path) || '(none)'}': use .npz, .mat or .json`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, encodeFile(format, values));
}
