import { ReferenceArgumentError, describeValue } from './errors.js';
import { layerDims, resolveConfig, type Layer, type Network, type NetworkConfig } from './network.js';

/**
 * The bnmlp weights file, version 1 (docs/weights-format.md): one JSON object
 *   { format: "bnmlp-weights", version: 1, dtype: "float32" | "float64", byteOrder: "little-endian",
 *     config: NetworkConfig, layers: [{ W, b, gamma, beta, runningMean, runningVar }] }
 * Each array is base64 of the little-endian values in row-major order (W is dIn × dOut);
 * gamma/beta/runningMean/runningVar are null where the layer has no batch norm (or no affine).
 * Written by @bnmlp/core (float32) and read here, so both run on bit-identical weights.
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

function decode(op: string, field: string, text: unknown, dtype: 'float32' | 'float64', expectedLength: number): Float64Array {
  if (typeof text !== 'string') throw new ReferenceArgumentError(op, field, 'a base64 string', describeValue(text));
  const bytes = Buffer.from(text, 'base64');
  const width = dtype === 'float32' ? 4 : 8;
  if (bytes.length !== expectedLength * width)
    throw new ReferenceArgumentError(op, field, `${expectedLength} ${dtype} values (${expectedLength * width} bytes)`, `${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(expectedLength);
  for (let i = 0; i < expectedLength; i++) out[i] = dtype === 'float32' ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true);
  return out;
}

function encode(values: Float64Array, dtype: 'float32' | 'float64'): string {
  const width = dtype === 'float32' ? 4 : 8;
  const bytes = Buffer.alloc(values.length * width);
  for (let i = 0; i < values.length; i++) {
    if (dtype === 'float32') bytes.writeFloatLE(values[i], i * 4);
    else bytes.writeDoubleLE(values[i], i * 8);
  }
  return bytes.toString('base64');
}

/** Parses a weights file (object or JSON text) into a float64 network, exactly (float32 → float64 is exact). */
export function networkFromWeights(file: WeightsFile | string): Network {
  const op = 'networkFromWeights';
  const data = (typeof file === 'string' ? JSON.parse(file) : file) as WeightsFile;
  if (data.format !== WEIGHTS_FORMAT) throw new ReferenceArgumentError(op, 'format', `'${WEIGHTS_FORMAT}'`, describeValue(data.format));
  if (data.version !== WEIGHTS_VERSION) throw new ReferenceArgumentError(op, 'version', String(WEIGHTS_VERSION), describeValue(data.version));
  if (data.dtype !== 'float32' && data.dtype !== 'float64') throw new ReferenceArgumentError(op, 'dtype', "'float32' or 'float64'", describeValue(data.dtype));
  // Every value is decoded little-endian; any other declared order would be silently misread.
  if (data.byteOrder !== 'little-endian') throw new ReferenceArgumentError(op, 'byteOrder', "'little-endian'", describeValue(data.byteOrder));
  if (typeof data.config !== 'object' || data.config === null) throw new ReferenceArgumentError(op, 'config', 'a network config object', describeValue(data.config));
  const config = resolveConfig(data.config, op);
  const dims = layerDims(config);
  if (!Array.isArray(data.layers) || data.layers.length !== dims.length)
    throw new ReferenceArgumentError(op, 'layers', `an array of ${dims.length} layers`, describeValue(data.layers));
  const layers = dims.map(([dIn, dOut], l): Layer => {
    const entry = data.layers[l];
    const field = (name: keyof WeightsFileLayer) => `layers[${l}].${name}`;
    const vec = (name: keyof WeightsFileLayer) => decode(op, field(name), entry[name], data.dtype, dOut);
    const hasBn = l < dims.length - 1 && config.batchNorm;
    return {
      W: { rows: dIn, cols: dOut, data: decode(op, field('W'), entry.W, data.dtype, dIn * dOut) },
      b: vec('b'),
      bn: hasBn
        ? {
            gamma: config.bnAffine ? vec('gamma') : null,
            beta: config.bnAffine ? vec('beta') : null,
            runningMean: vec('runningMean'),
            runningVar: vec('runningVar'),
          }
        : null,
    };
  });
  return { config, layers };
}

/** Serializes a network; float32 rounds every value (for tests that hand reference weights to core). */
export function networkToWeights(net: Network, dtype: 'float32' | 'float64' = 'float64'): WeightsFile {
  const opt = (v: Float64Array | null | undefined) => (v ? encode(v, dtype) : null);
  return {
    format: WEIGHTS_FORMAT,
    version: WEIGHTS_VERSION,
    dtype,
    byteOrder: 'little-endian',
    config: { ...net.config, hiddenDims: [...net.config.hiddenDims] },
    layers: net.layers.map((layer) => ({
      W: encode(layer.W.data, dtype),
      b: encode(layer.b, dtype),
      gamma: opt(layer.bn?.gamma),
      beta: opt(layer.bn?.beta),
      runningMean: opt(layer.bn?.runningMean),
      runningVar: opt(layer.bn?.runningVar),
    })),
  };
}
