import { layerDims, resolveConfig, type NetworkConfig } from './config.js';
import { CoreArgumentError, describeValue } from './errors.js';
import { hasBatchNorm, modelFromValues, modelValues, type CoreModel, type LayerValues } from './model.js';

/**
 * The bnmlp weights file, version 1 (docs/weights-format.md), shared with @bnmlp/reference:
 *   { format: "bnmlp-weights", version: 1, dtype: "float32" | "float64", byteOrder: "little-endian",
 *     config, layers: [{ W, b, gamma, beta, runningMean, runningVar }] }
 * Arrays are base64 of little-endian values, row-major (W is dIn × dOut); absent ones are null.
 * The core writes float32 (its exact values); it reads float32 and float64 (rounding to float32).
 */
export const WEIGHTS_FORMAT = 'bnmlp-weights';
export const WEIGHTS_VERSION = 1;

export interface WeightsFileLayer {
  W: string;
  b: string;
  gamma: string | null;
  beta: string | null;
  runningMean: string | null;
  runningVar: string | null;
}

export interface WeightsFile {
  format: typeof WEIGHTS_FORMAT;
  version: typeof WEIGHTS_VERSION;
  dtype: 'float32' | 'float64';
  byteOrder: 'little-endian';
  config: NetworkConfig;
  layers: WeightsFileLayer[];
}

function encodeFloat32(values: Float32Array): string {
  const bytes = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) bytes.writeFloatLE(values[i], i * 4);
  return bytes.toString('base64');
}

function decode(op: string, field: string, text: unknown, dtype: 'float32' | 'float64', length: number): Float32Array {
  if (typeof text !== 'string') throw new CoreArgumentError(op, field, 'a base64 string', describeValue(text));
  const bytes = Buffer.from(text, 'base64');
  const width = dtype === 'float32' ? 4 : 8;
  if (bytes.length !== length * width) throw new CoreArgumentError(op, field, `${length} ${dtype} values (${length * width} bytes)`, `${bytes.length} bytes`);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = dtype === 'float32' ? bytes.readFloatLE(i * 4) : bytes.readDoubleLE(i * 8);
  return out;
}

export function modelToWeights(model: CoreModel): WeightsFile {
  const opt = (v: Float32Array | null) => (v ? encodeFloat32(v) : null);
  return {
    format: WEIGHTS_FORMAT,
    version: WEIGHTS_VERSION,
    dtype: 'float32',
    byteOrder: 'little-endian',
    config: { ...model.config, hiddenDims: [...model.config.hiddenDims] },
    layers: modelValues(model).map((v) => ({
      W: encodeFloat32(v.W),
      b: encodeFloat32(v.b),
      gamma: opt(v.gamma),
      beta: opt(v.beta),
      runningMean: opt(v.runningMean),
      runningVar: opt(v.runningVar),
    })),
  };
}

/** Loads a weights file (object or JSON text); float64 files are rounded to float32. */
export function modelFromWeights(file: WeightsFile | string): CoreModel {
  const op = 'modelFromWeights';
  const data = (typeof file === 'string' ? JSON.parse(file) : file) as WeightsFile;
  if (typeof data !== 'object' || data === null) throw new CoreArgumentError(op, 'file', 'a weights object', describeValue(data));
  if (data.format !== WEIGHTS_FORMAT) throw new CoreArgumentError(op, 'format', `'${WEIGHTS_FORMAT}'`, describeValue(data.format));
  if (data.version !== WEIGHTS_VERSION) throw new CoreArgumentError(op, 'version', String(WEIGHTS_VERSION), describeValue(data.version));
  if (data.dtype !== 'float32' && data.dtype !== 'float64') throw new CoreArgumentError(op, 'dtype', "'float32' or 'float64'", describeValue(data.dtype));
  if (data.byteOrder !== 'little-endian') throw new CoreArgumentError(op, 'byteOrder', "'little-endian'", describeValue(data.byteOrder));
  const config = resolveConfig(op, data.config);
  const dims = layerDims(config);
  if (!Array.isArray(data.layers) || data.layers.length !== dims.length)
    throw new CoreArgumentError(op, 'layers', `an array of ${dims.length} layers`, describeValue(data.layers));
  const values = dims.map(([dIn, dOut], l): LayerValues => {
    const entry = data.layers[l];
    if (typeof entry !== 'object' || entry === null) throw new CoreArgumentError(op, `layers[${l}]`, 'an object of base64 arrays', describeValue(entry));
    const read = (name: keyof WeightsFileLayer, length: number) => decode(op, `layers[${l}].${name}`, entry[name], data.dtype, length);
    const bn = hasBatchNorm(config, l);
    return {
      W: read('W', dIn * dOut),
      b: read('b', dOut),
      gamma: bn && config.bnAffine ? read('gamma', dOut) : null,
      beta: bn && config.bnAffine ? read('beta', dOut) : null,
      runningMean: bn ? read('runningMean', dOut) : null,
      runningVar: bn ? read('runningVar', dOut) : null,
    };
  });
  return modelFromValues(config, values);
}
