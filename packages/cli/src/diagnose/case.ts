import type { ParameterKind } from '@bnmlp/core';
import { array, formatShape, scalar, sizeOf, text, type FileValue, type NamedValues } from './arrays.js';
import { DiagnoseInputError } from './errors.js';
import { CORRECT, cost, forward, type Matrix, type Network, type ReferenceModule } from './model.js';

/*
A diagnose case: one network's weights and one batch, everything needed to compute the exact
gradients, in a file anyone can load (files.ts). Version 1 holds:

  format 'bnmlp-diagnose-case', version 1, README (the text of caseReadme below)
  layers, dims, hidden, classes, batch, batch_norm, affine, lambda, eps, running_average_keep, seed
  X n×d, y (n labels 0..K−1), Y n×K one-hot
  W<l> dIn×dOut, b<l> dOut, gamma<l>/beta<l> dOut (BN layers with --affine),
  running_mean<l>/running_var<l> dOut (BN layers), cost, loss (J and its data term at these weights)
  data_source (where X came from)

All in the row-sample layout (ours): a sample per row, S = X·W + b. The column-sample layout of the
DD2424 course is the transpose of every matrix (X d×n, W dOut×dIn, S = W·X + b).
*/

export const CASE_FORMAT = 'bnmlp-diagnose-case';
export const CASE_VERSION = 1;

export interface CaseConfig {
  /** Linear layers k (k − 1 hidden layers). */
  readonly layers: number;
  readonly dims: number;
  readonly hidden: readonly number[];
  readonly classes: number;
  readonly batch: number;
  readonly batchNorm: boolean;
  readonly affine: boolean;
  readonly lambda: number;
  readonly eps: number;
  readonly runningAverageKeep: number;
  readonly seed: number;
}

export interface DiagnoseCase {
  readonly config: CaseConfig;
  readonly x: Matrix;
  readonly labels: Uint8Array;
  /** The weights as a @bnmlp/reference network (row-sample layout). */
  readonly net: Network;
  readonly cost: number;
  readonly loss: number;
  readonly dataSource: string;
}

/** The same kinds as @bnmlp/core's parameters. */
export type { ParameterKind };

export interface ParameterSpec {
  readonly name: string;
  readonly kind: ParameterKind;
  /** 1-based layer. */
  readonly layer: number;
  /** Row-sample shape: [dIn, dOut] for W, [dOut] otherwise. */
  readonly shape: readonly number[];
}

export function layerWidths(config: Pick<CaseConfig, 'dims' | 'hidden' | 'classes'>): number[] {
  return [config.dims, ...config.hidden, config.classes];
}

/** Every trainable parameter in case order: W1, b1, gamma1, beta1, W2, … (the reference's order). */
export function parameterSpecs(config: CaseConfig): ParameterSpec[] {
  const widths = layerWidths(config);
  const specs: ParameterSpec[] = [];
  for (let l = 1; l <= config.layers; l++) {
    const [dIn, dOut] = [widths[l - 1], widths[l]];
    specs.push({ name: `W${l}`, kind: 'W', layer: l, shape: [dIn, dOut] });
    specs.push({ name: `b${l}`, kind: 'b', layer: l, shape: [dOut] });
    if (config.batchNorm && config.affine && l < config.layers) {
      specs.push({ name: `gamma${l}`, kind: 'gamma', layer: l, shape: [dOut] });
      specs.push({ name: `beta${l}`, kind: 'beta', layer: l, shape: [dOut] });
    }
  }
  return specs;
}

export function networkConfig(config: CaseConfig): Network['config'] {
  return {
    inputDim: config.dims,
    hiddenDims: [...config.hidden],
    classes: config.classes,
    batchNorm: config.batchNorm,
    bnAffine: config.affine,
    eps: config.eps,
    runningAverageKeep: config.runningAverageKeep,
  };
}

export interface CaseData {
  /** n × d features (row-major), standardized. */
  readonly x: Matrix;
  readonly labels: Uint8Array;
  /** Another batch of the same size: the running averages are its batch statistics (as if it had set them). */
  readonly other: Matrix;
  readonly description: string;
}

/**
 * A new case: He-initialized W from `seed` (@bnmlp/reference createNetwork), then b, γ − 1 and β
 * drawn ~ N(0, 0.1²) from seed + 1 (so that no gradient is special by accident: γ = 1 would hide a
 * forgotten γ), and running averages set to the batch statistics of `data.other`.
 */
export function createCase(ref: ReferenceModule, config: CaseConfig, data: CaseData): DiagnoseCase {
  const net = ref.createNetwork(networkConfig(config), { kind: 'he' }, ref.createPrng(config.seed));
  const prng = ref.createPrng(config.seed + 1);
  const draw = (values: Float64Array | null | undefined, offset: number) => {
    if (values) for (let i = 0; i < values.length; i++) values[i] = offset + 0.1 * ref.nextNormal(prng);
  };
  for (const layer of net.layers) {
    draw(layer.b, 0);
    draw(layer.bn?.gamma, 1);
    draw(layer.bn?.beta, 0);
  }
  const other = forward(ref, net, data.other, CORRECT);
  net.layers.forEach((layer, l) => {
    const bn = other.layers[l].bn;
    if (layer.bn && bn) {
      layer.bn.runningMean.set(bn.mean);
      layer.bn.runningVar.set(bn.variance);
    }
  });
  const result = forward(ref, net, data.x, CORRECT);
  return {
    config,
    x: data.x,
    labels: Uint8Array.from(data.labels),
    net,
    cost: cost(ref, net, result, data.labels, config.lambda, CORRECT),
    loss: ref.crossEntropyForward(result.logits, data.labels),
    dataSource: data.description,
  };
}

const fmt = (v: number) => (v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : String(v));

/** The description stored in the case file as README. */
export function caseReadme(c: DiagnoseCase, bnmlpVersion: string): string {
  const { config: cfg } = c;
  const widths = layerWidths(cfg);
  const k = cfg.layers;
  const bn = cfg.batchNorm
    ? [
        `BatchNorm after every hidden linear layer, training mode: per unit, over the batch of n = ${cfg.batch}:`,
        `  mu = mean(s), var = mean((s - mu)^2) (biased: divide by n), s_hat = (s - mu) / sqrt(var + eps), eps = ${fmt(cfg.eps)} inside the sqrt,`,
        cfg.affine ? '  then y = gamma * s_hat + beta.' : '  no gamma/beta.',
        '  The bias b before a BN layer has gradient exactly 0 (BN removes any per-unit shift).',
        '  running_mean<l>/running_var<l>: running averages, used by nothing in a correct gradient check (they are here for',
        `  code that keeps them: avg = ${cfg.runningAverageKeep}*avg + ${fmt(1 - cfg.runningAverageKeep)}*batch).`,
      ]
    : ['No batch norm.'];
  return [
    `bnmlp diagnose case, format version ${CASE_VERSION} (written by bnmlp ${bnmlpVersion}).`,
    '',
    `Network: ${k}-layer MLP ${widths.join(' -> ')}: {Linear -> ${cfg.batchNorm ? 'BatchNorm -> ' : ''}ReLU} x ${k - 1} -> Linear -> softmax.`,
    ...bn,
    `Cost: J = mean over the batch of the cross-entropy + lambda * sum_l ||W_l||^2, lambda = ${fmt(cfg.lambda)}`,
    '  (gradient of the penalty: 2*lambda*W; b, gamma, beta are not penalized).',
    `At these weights J = ${c.cost} (cross-entropy ${c.loss}): check your forward pass first.`,
    '',
    `Arrays, row-sample layout (bnmlp's): X n x d (${cfg.batch} x ${cfg.dims}, one sample per row), y n labels 0..${cfg.classes - 1}`,
    '  (add 1 for MATLAB indexing), Y n x K one-hot; W<l> d_in x d_out, S = X W + b; b<l>, gamma<l>, beta<l> vectors of d_out.',
    "Column-sample layout (the DD2424 course's): transpose every matrix: X' is d x n, Y' is K x n, W<l>' is d_out x d_in,",
    '  S = W X + b with b a d_out x 1 column.',
    '',
    'Your answer: one file (.npz via numpy.savez, .mat via MATLAB save, or .json) holding your gradients of J under the',
    `same names: ${parameterSpecs(cfg).map((p) => p.name).join(', ')}, in either layout (transposes are recognised).`,
    'Optional: your numeric gradients as num_W1, num_b1, ...; the step you used as h; the relative error your checker',
    'reported per parameter as relerr_W1, ... (one number each).',
    'Then: bnmlp diagnose check <this case file> <your file>',
  ].join('\n');
}

/** The case as named entries, in the order the file lists them. */
export function caseValues(c: DiagnoseCase, bnmlpVersion: string): NamedValues {
  const { config: cfg, x, net } = c;
  const values: NamedValues = new Map<string, FileValue>([
    ['format', text(CASE_FORMAT)],
    ['version', scalar(CASE_VERSION)],
    ['README', text(caseReadme(c, bnmlpVersion))],
    ['layers', scalar(cfg.layers)],
    ['dims', scalar(cfg.dims)],
    ['hidden', array([cfg.hidden.length], cfg.hidden)],
    ['classes', scalar(cfg.classes)],
    ['batch', scalar(cfg.batch)],
    ['batch_norm', scalar(cfg.batchNorm ? 1 : 0)],
    ['affine', scalar(cfg.affine ? 1 : 0)],
    ['lambda', scalar(cfg.lambda)],
    ['eps', scalar(cfg.eps)],
    ['running_average_keep', scalar(cfg.runningAverageKeep)],
    ['seed', scalar(cfg.seed)],
    ['cost', scalar(c.cost)],
    ['loss', scalar(c.loss)],
    ['X', array([x.rows, x.cols], x.data)],
    ['y', array([c.labels.length], c.labels)],
    ['Y', array([x.rows, cfg.classes], Array.from({ length: x.rows * cfg.classes }, (_, i) => (c.labels[Math.floor(i / cfg.classes)] === i % cfg.classes ? 1 : 0)))],
  ]);
  net.layers.forEach((layer, l) => {
    const n = l + 1;
    values.set(`W${n}`, array([layer.W.rows, layer.W.cols], layer.W.data));
    values.set(`b${n}`, array([layer.b.length], layer.b));
    if (layer.bn?.gamma) values.set(`gamma${n}`, array([layer.bn.gamma.length], layer.bn.gamma));
    if (layer.bn?.beta) values.set(`beta${n}`, array([layer.bn.beta.length], layer.bn.beta));
    if (layer.bn) {
      values.set(`running_mean${n}`, array([layer.bn.runningMean.length], layer.bn.runningMean));
      values.set(`running_var${n}`, array([layer.bn.runningVar.length], layer.bn.runningVar));
    }
  });
  values.set('data_source', text(c.dataSource));
  return values;
}

/** A vector may come as (n), (1, n) or (n, 1); a scalar as () or (1, 1) etc. */
function squeeze(shape: readonly number[]): number[] {
  return shape.filter((d) => d !== 1);
}

/** Reads a case back; every problem is a DiagnoseInputError naming the file and the entry. */
export function parseCase(values: NamedValues, source: string): DiagnoseCase {
  const fail = (problem: string): never => {
    throw new DiagnoseInputError(source, problem);
  };
  const format = values.get('format');
  if (!format || format.kind !== 'text' || format.text !== CASE_FORMAT) {
    const looksLikeGradients = [...values.keys()].some((k) => /^(num_)?W\d+$/.test(k)) && !values.has('X');
    fail(
      `not a bnmlp diagnose case (no 'format' entry '${CASE_FORMAT}')${looksLikeGradients ? ': it looks like a gradient file; the case comes first: bnmlp diagnose check CASE YOURS' : ''}`,
    );
  }
  const versionValue = values.get('version');
  const version = versionValue?.kind === 'array' && versionValue.data.length === 1 ? versionValue.data[0] : NaN;
  if (version !== CASE_VERSION)
    fail(
      `a bnmlp diagnose case of version ${Number.isNaN(version) ? '(none)' : version}; this bnmlp reads version ${CASE_VERSION}: export the case again with this bnmlp (bnmlp diagnose export …)`,
    );
  const entry = (name: string): { shape: number[]; data: Float64Array } => {
    const v = values.get(name);
    if (!v) return fail(`the case has no '${name}' (a damaged or edited case file)`);
    if (v.kind !== 'array') return fail(`'${name}' must be numbers, got text`);
    if (Array.from(v.data).some((d) => !Number.isFinite(d))) fail(`'${name}' has non-finite entries (a damaged case file)`);
    return { shape: [...v.shape], data: v.data };
  };
  const num = (name: string, ok: (v: number) => boolean, expected: string): number => {
    const v = entry(name);
    if (v.data.length !== 1 || !ok(v.data[0])) fail(`'${name}' must be ${expected}, got ${v.data.length === 1 ? v.data[0] : formatShape(v.shape)}`);
    return v.data[0];
  };
  const posInt = (v: number) => Number.isInteger(v) && v >= 1;
  const layers = num('layers', posInt, 'an integer >= 1');
  const dims = num('dims', posInt, 'an integer >= 1');
  const classes = num('classes', (v) => Number.isInteger(v) && v >= 2, 'an integer >= 2');
  const batch = num('batch', (v) => Number.isInteger(v) && v >= 2, 'an integer >= 2');
  const hiddenValue = entry('hidden');
  const hidden = Array.from(hiddenValue.data);
  if (hidden.length !== layers - 1 || !hidden.every(posInt)) fail(`'hidden' must hold ${layers - 1} positive integers (layers − 1), got [${hidden.join(', ')}]`);
  const flag = (name: string) => num(name, (v) => v === 0 || v === 1, '0 or 1') === 1;
  const config: CaseConfig = {
    layers,
    dims,
    hidden,
    classes,
    batch,
    batchNorm: flag('batch_norm'),
    affine: flag('affine'),
    lambda: num('lambda', (v) => v >= 0, 'a number >= 0'),
    eps: num('eps', (v) => v > 0, 'a number > 0'),
    runningAverageKeep: num('running_average_keep', (v) => v >= 0 && v <= 1, 'a number in [0, 1]'),
    seed: num('seed', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0'),
  };
  const matrix = (name: string, rows: number, cols: number): Matrix => {
    const v = entry(name);
    if (v.shape.length !== 2 || v.shape[0] !== rows || v.shape[1] !== cols) fail(`'${name}' must be ${rows}×${cols}, got ${formatShape(v.shape)}`);
    return { rows, cols, data: Float64Array.from(v.data) };
  };
  const vector = (name: string, n: number): Float64Array => {
    const v = entry(name);
    if (sizeOf(v.shape) !== n || squeeze(v.shape).length > 1) fail(`'${name}' must be a vector of ${n}, got ${formatShape(v.shape)}`);
    return Float64Array.from(v.data);
  };
  const x = matrix('X', batch, dims);
  const labelValues = vector('y', batch);
  if (!labelValues.every((y) => Number.isInteger(y) && y >= 0 && y < classes)) fail(`'y' must hold labels 0..${classes - 1}`);
  const widths = layerWidths(config);
  const net: Network = {
    config: networkConfig(config),
    layers: Array.from({ length: layers }, (_, i) => {
      const l = i + 1;
      const dOut = widths[l];
      const hasBn = config.batchNorm && l < layers;
      return {
        W: matrix(`W${l}`, widths[l - 1], dOut),
        b: vector(`b${l}`, dOut),
        bn: hasBn
          ? {
              gamma: config.affine ? vector(`gamma${l}`, dOut) : null,
              beta: config.affine ? vector(`beta${l}`, dOut) : null,
              runningMean: vector(`running_mean${l}`, dOut),
              runningVar: vector(`running_var${l}`, dOut),
            }
          : null,
      };
    }),
  };
  const source2 = values.get('data_source');
  return {
    config,
    x,
    labels: Uint8Array.from(labelValues),
    net,
    cost: num('cost', Number.isFinite, 'a number'),
    loss: num('loss', Number.isFinite, 'a number'),
    dataSource: source2?.kind === 'text' ? source2.text : '',
  };
}
