import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createNetwork, parameters, type Network } from './network.js';
import { createPrng, nextNormal } from './prng.js';
import { buildNetworkCase, networkCaseArb } from './test-support/arbitraries.js';
import { expectArgumentError } from './test-support/assertions.js';
import { networkFromWeights, networkToWeights, WEIGHTS_FORMAT, WEIGHTS_VERSION, type WeightsFile } from './weights-format.js';

/** Random running averages too, so every stored array carries information. */
function populatedNetwork(seed: number, spec = { inputDim: 3, hiddenDims: [4, 2], classes: 3 }): Network {
  const prng = createPrng(seed);
  const net = createNetwork(spec, { kind: 'he' }, prng);
  for (const layer of net.layers) {
    layer.b.forEach((_, j, b) => (b[j] = nextNormal(prng)));
    if (layer.bn) {
      layer.bn.gamma!.forEach((_, j, g) => (g[j] = nextNormal(prng)));
      layer.bn.beta!.forEach((_, j, g) => (g[j] = nextNormal(prng)));
      layer.bn.runningMean.forEach((_, j, g) => (g[j] = nextNormal(prng)));
      layer.bn.runningVar.forEach((_, j, g) => (g[j] = Math.abs(nextNormal(prng))));
    }
  }
  return net;
}

describe('weights format', () => {
  it('float64 round trip is exact, through the object and through JSON text', () => {
    fc.assert(
      fc.property(networkCaseArb(), (spec) => {
        const { net } = buildNetworkCase(spec);

        const file = networkToWeights(net, 'float64');

        expect(networkFromWeights(file)).toEqual(net);
        expect(networkFromWeights(JSON.stringify(file))).toEqual(net);
      }),
    );
  });

  it('float32 rounds every stored value to the nearest float32 (running averages included)', () => {
    const net = populatedNetwork(4);

    const back = networkFromWeights(networkToWeights(net, 'float32'));

    for (const [i, ref] of parameters(back).entries()) expect(Array.from(ref.values)).toEqual(Array.from(parameters(net)[i].values, Math.fround));
    back.layers.forEach((layer, l) => {
      if (!layer.bn) return;
      expect(Array.from(layer.bn.runningMean)).toEqual(Array.from(net.layers[l].bn!.runningMean, Math.fround));
      expect(Array.from(layer.bn.runningVar)).toEqual(Array.from(net.layers[l].bn!.runningVar, Math.fround));
    });
    expect(back.layers[0].W.data).not.toEqual(net.layers[0].W.data);
  });

  it('writes little-endian base64 in the documented envelope', () => {
    const net = createNetwork({ inputDim: 1, hiddenDims: [], classes: 1 });
    net.layers[0].W.data[0] = 1;

    const f64 = networkToWeights(net, 'float64');
    const f32 = networkToWeights(net, 'float32');

    expect(f64).toMatchObject({ format: WEIGHTS_FORMAT, version: WEIGHTS_VERSION, dtype: 'float64', byteOrder: 'little-endian', config: net.config });
    // 1.0 = 0x3FF0000000000000 (float64) and 0x3F800000 (float32), least significant byte first.
    expect(f64.layers[0].W).toBe(Buffer.from([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]).toString('base64'));
    expect(f32.layers[0].W).toBe(Buffer.from([0, 0, 0x80, 0x3f]).toString('base64'));
    expect(f64.layers[0]).toMatchObject({ gamma: null, beta: null, runningMean: null, runningVar: null });
  });

  it('stores null γ/β without affine, and null BN state on the output layer', () => {
    const net = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, bnAffine: false });

    const file = networkToWeights(net);

    expect(file.layers[0]).toMatchObject({ gamma: null, beta: null });
    expect(typeof file.layers[0].runningMean).toBe('string');
    expect(file.layers[1]).toMatchObject({ gamma: null, beta: null, runningMean: null, runningVar: null });
    expect(networkFromWeights(file)).toEqual(net);
  });

  describe('validation', () => {
    const good = () => networkToWeights(populatedNetwork(1)) as WeightsFile;
    const op = 'networkFromWeights';

    it('rejects a wrong format, version, dtype or byte order', () => {
      expectArgumentError(() => networkFromWeights({ ...good(), format: 'other' as typeof WEIGHTS_FORMAT }), { op, argument: 'format', expected: "'bnmlp-weights'", actual: '"other"' });
      expectArgumentError(() => networkFromWeights({ ...good(), version: 2 as typeof WEIGHTS_VERSION }), { op, argument: 'version', expected: '1', actual: '2' });
      expectArgumentError(() => networkFromWeights({ ...good(), dtype: 'float16' as 'float32' }), { op, argument: 'dtype', actual: '"float16"' });
      // Regression: byteOrder was not checked, so a big-endian file would be silently misread.
      expectArgumentError(() => networkFromWeights({ ...good(), byteOrder: 'big-endian' as 'little-endian' }), { op, argument: 'byteOrder', expected: "'little-endian'", actual: '"big-endian"' });
    });

    it('rejects arrays of the wrong length, missing arrays and a wrong layer count', () => {
      const file = good();
      const shortW = { ...file, layers: [{ ...file.layers[0], W: file.layers[0].W.slice(0, 8) }, ...file.layers.slice(1)] };
      const missingGamma = { ...file, layers: [{ ...file.layers[0], gamma: null }, ...file.layers.slice(1)] };

      // W1 is 3 × 4 = 12 float64 values = 96 bytes; 8 base64 characters are 6 bytes.
      expectArgumentError(() => networkFromWeights(shortW), { op, argument: 'layers[0].W', expected: '12 float64 values (96 bytes)', actual: '6 bytes' });
      expectArgumentError(() => networkFromWeights(missingGamma), { op, argument: 'layers[0].gamma', expected: 'a base64 string', actual: 'null' });
      expectArgumentError(() => networkFromWeights({ ...file, layers: file.layers.slice(1) }), { op, argument: 'layers', expected: 'an array of 3 layers', actual: 'array(2)' });
    });

    it('rejects an invalid config under its own op name', () => {
      const file = good();

      expectArgumentError(() => networkFromWeights({ ...file, config: { ...file.config, inputDim: 0 } }), { op, argument: 'inputDim', actual: '0' });
      expectArgumentError(() => networkFromWeights({ ...file, config: { ...file.config, batchNorm: 'yes' as unknown as boolean } }), { op, argument: 'batchNorm' });
      expectArgumentError(() => networkFromWeights({ ...file, config: undefined as unknown as WeightsFile['config'] }), { op, argument: 'config', actual: 'undefined' });
    });
  });
});
