import { formatShape, sizeOf, type NamedValues } from './arrays.js';
import type { ParameterKind, ParameterSpec } from './case.js';
import { DiagnoseInputError } from './errors.js';

/*
What someone sends: their gradients under our names, in the row-sample layout (W dIn×dOut) or the
column-sample one (W dOut×dIn, b as a dOut×1 column), in any of the three file formats.

  W1, b1, gamma1, beta1, …        analytic gradients (every parameter of the case)
  num_W1, num_b1, …               numeric gradients (optional; any subset of parameters)
  h                               the step of the numeric gradients (optional)
  relerr_W1, …                    the relative error their checker reported per parameter (optional)

gammas<l>/betas<l> (the DD2424 names) are read as gamma<l>/beta<l>. Other names are ignored.
*/

export type Side = 'analytic' | 'numeric';
export type Layout = 'row-sample' | 'column-sample';

export interface RawGradient {
  /** As written in the file (num_W1, gammas2, …). */
  readonly fileName: string;
  /** Canonical name: W1, gamma2 (without num_). */
  readonly name: string;
  readonly side: Side;
  readonly kind: ParameterKind;
  readonly index: number;
  readonly shape: readonly number[];
  /** Row-major, as the file's shape. */
  readonly data: Float64Array;
}

export interface Submission {
  readonly source: string;
  readonly arrays: RawGradient[];
  readonly h: number | null;
  /** By canonical parameter name. */
  readonly relerr: Map<string, number>;
  readonly ignored: string[];
}

const NAME = /^(num_)?(W|b|gammas?|betas?)(\d+)$/;
const RELERR = /^relerr_(W|b|gammas?|betas?)(\d+)$/;

function canonicalKind(text: string): ParameterKind {
  return text.startsWith('gamma') ? 'gamma' : text.startsWith('beta') ? 'beta' : (text as ParameterKind);
}

function position(shape: readonly number[], flat: number): string {
  const index: number[] = [];
  let rest = flat;
  for (let d = shape.length - 1; d >= 0; d--) {
    index.unshift(rest % shape[d]);
    rest = Math.floor(rest / shape[d]);
  }
  return `[${index.join(',')}]`;
}

export function readSubmission(values: NamedValues, source: string): Submission {
  const arrays: RawGradient[] = [];
  const relerr = new Map<string, number>();
  const ignored: string[] = [];
  let h: number | null = null;
  const seen = new Map<string, string>();
  for (const [fileName, value] of values) {
    const m = NAME.exec(fileName);
    const r = RELERR.exec(fileName);
    if (fileName === 'h') {
      if (value.kind !== 'array' || value.data.length !== 1 || !(value.data[0] > 0) || !Number.isFinite(value.data[0]))
        throw new DiagnoseInputError(source, `'h' (the step of your numeric gradients) must be one number > 0, got ${value.kind === 'text' ? 'text' : value.data.length === 1 ? value.data[0] : formatShape(value.shape)}`);
      h = value.data[0];
      continue;
    }
    if (r) {
      const name = `${canonicalKind(r[1])}${Number(r[2])}`;
      if (value.kind !== 'array' || value.data.length === 0) throw new DiagnoseInputError(source, `'${fileName}' must be a number (the relative error your checker reported for ${name})`);
      const finite = Array.from(value.data).filter((v) => !Number.isNaN(v));
      if (finite.length === 0 || finite.some((v) => v < 0)) throw new DiagnoseInputError(source, `'${fileName}' must be a number >= 0 (the relative error your checker reported for ${name})`);
      relerr.set(name, Math.max(...finite));
      continue;
    }
    if (!m) {
      ignored.push(fileName);
      continue;
    }
    const side: Side = m[1] ? 'numeric' : 'analytic';
    const kind = canonicalKind(m[2]);
    const index = Number(m[3]);
    const name = `${kind}${index}`;
    const label = side === 'numeric' ? `num_${name}` : name;
    if (seen.has(label)) throw new DiagnoseInputError(source, `'${fileName}' and '${seen.get(label)}' are both ${label}: keep one`);
    seen.set(label, fileName);
    if (value.kind !== 'array') throw new DiagnoseInputError(source, `${fileName} must be an array of numbers, got text`);
    const bad = value.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      const count = value.data.filter((v) => !Number.isFinite(v)).length;
      throw new DiagnoseInputError(
        source,
        `${fileName} has ${count} NaN or infinite ${count === 1 ? 'entry' : 'entries'} (the first at ${position(value.shape, bad)} of ${formatShape(value.shape)}): every entry must be a finite gradient`,
      );
    }
    arrays.push({ fileName, name, side, kind, index, shape: [...value.shape], data: value.data });
  }
  if (arrays.length === 0)
    throw new DiagnoseInputError(source, `holds no gradients: expected arrays named W1, b1, gamma1, beta1, … (and optionally num_W1, …)${ignored.length ? `; found ${ignored.map((n) => `'${n}'`).join(', ')}` : ''}`);
  return { source, arrays, h, relerr, ignored };
}

/**
 * The gradient in our row-sample layout when its shape fits `spec` in either layout, with the
 * layout it came in; null when it fits neither. A square W is taken as given ('row-sample') here;
 * the caller decides squares by their values.
 */
export function orient(raw: Pick<RawGradient, 'shape' | 'data'>, spec: ParameterSpec): { data: Float64Array; layout: Layout | 'either' } | null {
  const squeezed = raw.shape.filter((d) => d !== 1);
  if (spec.kind !== 'W') {
    const [n] = spec.shape;
    if (sizeOf(raw.shape) !== n || squeezed.length > 1) return null;
    const column = raw.shape.length === 2 && raw.shape[1] === 1 && raw.shape[0] === n && n > 1;
    return { data: raw.data, layout: column ? 'column-sample' : 'either' };
  }
  const [dIn, dOut] = spec.shape;
  if (raw.shape.length !== 2 && !(raw.shape.length === 1 && (dIn === 1 || dOut === 1) && raw.shape[0] === dIn * dOut)) return null;
  const [r, c] = raw.shape.length === 2 ? raw.shape : dIn === 1 ? [1, raw.shape[0]] : [raw.shape[0], 1];
  if (r === dIn && c === dOut) return { data: raw.data, layout: dIn === dOut ? 'either' : 'row-sample' };
  if (r === dOut && c === dIn) {
    const data = new Float64Array(dIn * dOut);
    for (let i = 0; i < dOut; i++) for (let j = 0; j < dIn; j++) data[j * dOut + i] = raw.data[i * dIn + j];
    return { data, layout: 'column-sample' };
  }
  return null;
}

/** The transpose of a square W given in row-major order. */
export function transposeSquare(data: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[j * n + i] = data[i * n + j];
  return out;
}

export function expectedShapes(spec: ParameterSpec): string {
  if (spec.kind !== 'W') return `a vector of ${spec.shape[0]}`;
  const [dIn, dOut] = spec.shape;
  return `${dIn}×${dOut} (row-sample, dIn×dOut) or ${dOut}×${dIn} (column-sample, dOut×dIn)`;
}
