import { Decimal as DecimalJs } from 'decimal.js';
import type { Matrix } from './matrix.js';
import type { Mode } from './model.js';
import { parameters, type Network } from './network.js';

/**
 * Ground truth for tests: the same cost J, computed in decimal arithmetic with `precision`
 * significant digits (exp, ln and sqrt included), and centered differences with a tiny step.
 * Inputs (X, parameters, ε, λ) enter as the exact value of each float64 (not its shortest decimal
 * representation, which differs by up to half an ulp: 1e-17 relative); with 50 digits
 * and h = 1e-20, a centered difference has truncation error ~h² and rounding ~10^-precision/h,
 * both far below float64's resolution, so float64 results can be judged to ~1e-12 relative.
 * Slow by design: use on small networks only.
 */
export interface DecimalOracleOptions {
  readonly precision?: number;
  readonly mode?: Mode;
}

export type Dec = DecimalJs;
type DecimalCtor = typeof DecimalJs;

function decimalClass(precision: number): DecimalCtor {
  return DecimalJs.clone({ precision, rounding: DecimalJs.ROUND_HALF_EVEN, toExpNeg: -9e15, toExpPos: 9e15 });
}

interface DecNet {
  W: Dec[][][];
  b: Dec[][];
  gamma: (Dec[] | null)[];
  beta: (Dec[] | null)[];
  runningMean: (Dec[] | null)[];
  runningVar: (Dec[] | null)[];
}

/**
 * The exact value of a float64 (rounded to the class's precision): m · 2^e with an integer
 * |m| < 2^53, which decimal.js reads exactly. Scaling a finite float64 by 2 is exact, so m and e are too.
 */
export function exactDecimal(D: DecimalCtor, value: number): Dec {
  if (!Number.isFinite(value)) return new D(value);
  let mantissa = value;
  let exponent = 0;
  while (!Number.isInteger(mantissa)) {
    mantissa *= 2;
    exponent--;
  }
  while (Math.abs(mantissa) >= 2 ** 53) {
    mantissa /= 2;
    exponent++;
  }
  return new D(mantissa).times(new D(2).pow(exponent));
}

function toDecNet(D: DecimalCtor, net: Network): DecNet {
  const vec = (a: Float64Array | null) => (a ? Array.from(a, (v) => exactDecimal(D, v)) : null);
  return {
    W: net.layers.map((l) => Array.from({ length: l.W.rows }, (_, i) => Array.from(l.W.data.subarray(i * l.W.cols, (i + 1) * l.W.cols), (v) => exactDecimal(D, v)))),
    b: net.layers.map((l) => vec(l.b)!),
    gamma: net.layers.map((l) => vec(l.bn?.gamma ?? null)),
    beta: net.layers.map((l) => vec(l.bn?.beta ?? null)),
    runningMean: net.layers.map((l) => vec(l.bn?.runningMean ?? null)),
    runningVar: net.layers.map((l) => vec(l.bn?.runningVar ?? null)),
  };
}

function toDecRows(D: DecimalCtor, x: Matrix): Dec[][] {
  return Array.from({ length: x.rows }, (_, i) => Array.from(x.data.subarray(i * x.cols, (i + 1) * x.cols), (v) => exactDecimal(D, v)));
}

function decCost(D: DecimalCtor, net: Network, p: DecNet, x: Dec[][], labels: ArrayLike<number>, lambda: number, mode: Mode): Dec {
  const eps = exactDecimal(D, net.config.eps);
  const zero = new D(0);
  let h = x;
  const k = net.layers.length;
  for (let l = 0; l < k; l++) {
    const W = p.W[l];
    const dOut = p.b[l].length;
    let s = h.map((row) => p.b[l].map((bj, j) => row.reduce((acc, xi, i) => acc.plus(xi.times(W[i][j])), bj)));
    if (net.layers[l].bn) {
      const n = s.length;
      const stats = Array.from({ length: dOut }, (_, j) => {
        if (mode === 'inference') return { mean: p.runningMean[l]![j], variance: p.runningVar[l]![j] };
        const mean = s.reduce((acc, row) => acc.plus(row[j]), zero).div(n);
        const variance = s.reduce((acc, row) => acc.plus(row[j].minus(mean).pow(2)), zero).div(n);
        return { mean, variance };
      });
      s = s.map((row) =>
        row.map((v, j) => {
          const xhat = v.minus(stats[j].mean).div(stats[j].variance.plus(eps).sqrt());
          const g = p.gamma[l]?.[j] ?? new D(1);
          const b = p.beta[l]?.[j] ?? zero;
          return g.times(xhat).plus(b);
        }),
      );
    }
    h = l < k - 1 ? s.map((row) => row.map((v) => (v.gt(0) ? v : zero))) : s;
  }
  // Mean cross-entropy via log-sum-exp, then λ Σ‖W‖².
  let loss = zero;
  h.forEach((row, i) => {
    const max = DecimalJs.max(...row);
    const lse = row.reduce((acc, v) => acc.plus(v.minus(max).exp()), zero).ln().plus(max);
    loss = loss.plus(lse.minus(row[labels[i]]));
  });
  loss = loss.div(h.length);
  const sq = p.W.reduce((acc, W) => W.reduce((a, row) => row.reduce((b, w) => b.plus(w.times(w)), a), acc), zero);
  return loss.plus(exactDecimal(D, lambda).times(sq));
}

/** J in decimal arithmetic (training mode by default). */
export function decimalCost(net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, options: DecimalOracleOptions = {}): Dec {
  const D = decimalClass(options.precision ?? 50);
  return decCost(D, net, toDecNet(D, net), toDecRows(D, x), labels, lambda, options.mode ?? 'train');
}

/**
 * Decimal centered differences for every entry of the named parameters (all when `only` is
 * omitted): name → Float64Array of ∂J/∂θ rounded to float64.
 */
export function decimalGradients(
  net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number,
  options: DecimalOracleOptions & { readonly h?: string; readonly only?: readonly string[] } = {},
): Record<string, Float64Array> {
  const D = decimalClass(options.precision ?? 50);
  const h = new D(options.h ?? '1e-20');
  const mode = options.mode ?? 'train';
  const base = toDecNet(D, net);
  const rows = toDecRows(D, x);
  const out: Record<string, Float64Array> = {};
  for (const ref of parameters(net)) {
    if (options.only && !options.only.includes(ref.name)) continue;
    const grad = new Float64Array(ref.values.length);
    for (let i = 0; i < grad.length; i++) {
      const slot = locate(base, ref.kind, ref.layer, ref.shape, i);
      const original = slot.get();
      slot.set(original.plus(h));
      const plus = decCost(D, net, base, rows, labels, lambda, mode);
      slot.set(original.minus(h));
      const minus = decCost(D, net, base, rows, labels, lambda, mode);
      slot.set(original);
      grad[i] = plus.minus(minus).div(h.times(2)).toNumber();
    }
    out[ref.name] = grad;
  }
  return out;
}

function locate(p: DecNet, kind: string, layer: number, shape: readonly number[], flat: number): { get(): Dec; set(v: Dec): void } {
  if (kind === 'W') {
    const row = p.W[layer][Math.floor(flat / shape[1])];
    const col = flat % shape[1];
    return { get: () => row[col], set: (v) => (row[col] = v) };
  }
  const vec = kind === 'b' ? p.b[layer] : kind === 'gamma' ? p.gamma[layer]! : p.beta[layer]!;
  return { get: () => vec[flat], set: (v) => (vec[flat] = v) };
}
