import * as reference from '@bnmlp/reference';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCase } from '../commands/diagnose.js';
import { tinyCifarDir } from '../test-support/paths.js';
import type { DiagnoseCase } from './case.js';
import { CORRECT, backward, cost, forward, gradients, quotient, differences, type Knobs } from './model.js';

let c: DiagnoseCase;
beforeAll(async () => {
  ({ c } = await buildCase(
    { layers: 3, dims: 10, hidden: [12, 8], classes: 10, batch: 8, batchNorm: true, affine: true, lambda: 0.01, eps: 1e-3, runningAverageKeep: 0.9, seed: 1 },
    tinyCifarDir,
    {},
    { importReference: async () => reference },
  ));
});

function referenceGradients(net: reference.Network, mode: reference.Mode = 'train'): Map<string, Float64Array> {
  const g = reference.costAndGradients(net, c.x, c.labels, 0.01, mode).gradients;
  return new Map(reference.parameters(net).map((p) => [p.name, reference.gradientOf(g, p)]));
}

/** Max |a − b| / max |b| over every parameter. */
function relativeDistance(a: Map<string, Float64Array>, b: Map<string, Float64Array>, skip?: Map<string, Uint8Array>): number {
  let worst = 0;
  for (const [name, x] of b) {
    const y = a.get(name)!;
    const scale = Math.max(...Array.from(x, Math.abs), 1e-3); // the bias before BN is exactly 0: judged in units of 1e-3
    x.forEach((v, i) => {
      if (!skip?.get(name)?.[i]) worst = Math.max(worst, Math.abs(y[i] - v) / scale);
    });
  }
  return worst;
}

describe('the switchable model', () => {
  it("with every switch right is @bnmlp/reference's forward and costAndGradients, bit for bit", () => {
    const ours = forward(reference, c.net, c.x);
    const theirs = reference.forward(c.net, c.x, 'train');
    expect(Array.from(ours.probs.data)).toEqual(Array.from(theirs.probs.data));
    expect(cost(reference, c.net, ours, c.labels, 0.01)).toBe(reference.cost(c.net, c.x, c.labels, 0.01).cost);
    expect(cost(reference, c.net, ours, c.labels, 0.01)).toBe(c.cost);
    const g = backward(reference, c.net, ours, c.labels, 0.01);
    const r = referenceGradients(c.net);
    expect([...g.keys()]).toEqual([...r.keys()]);
    for (const [name, values] of r) expect(Array.from(g.get(name)!), name).toEqual(Array.from(values));
  });

  it('centered differences of the correct cost agree with the exact gradient (kinks left out)', () => {
    const d = differences(reference, c.net, c.x, c.labels, 0.01, { h: 1e-5 });
    const numeric = new Map([...d.plus.keys()].map((name) => [name, quotient(d, name, 'centered')]));
    expect(relativeDistance(numeric, gradients(reference, c.net, c.x, c.labels, 0.01), d.kink)).toBeLessThan(1e-6);
  });

  it("'running' and 'frozen' statistics are the reference's inference mode with the running averages, or with the batch statistics", () => {
    const withKnobs = (knobs: Partial<Knobs>) => {
      const d = differences(reference, c.net, c.x, c.labels, 0.01, { h: 1e-5, knobs: { ...CORRECT, ...knobs } });
      return { numeric: new Map([...d.plus.keys()].map((name) => [name, quotient(d, name, 'centered')])), kink: d.kink };
    };
    const running = withKnobs({ statistics: 'running' });
    expect(relativeDistance(running.numeric, referenceGradients(c.net, 'inference'), running.kink)).toBeLessThan(1e-6);
    const frozenNet = reference.cloneNetwork(c.net);
    forward(reference, c.net, c.x).layers.forEach((layer, l) => {
      if (layer.bn) {
        frozenNet.layers[l].bn!.runningMean.set(layer.bn.mean);
        frozenNet.layers[l].bn!.runningVar.set(layer.bn.variance);
      }
    });
    const frozen = withKnobs({ statistics: 'frozen' });
    expect(relativeDistance(frozen.numeric, referenceGradients(frozenNet, 'inference'), frozen.kink)).toBeLessThan(1e-6);
  });

  it('each forward switch changes the cost, and each backward switch the gradients', () => {
    const exact = gradients(reference, c.net, c.x, c.labels, 0.01);
    const backwardSwitches: Array<Partial<Knobs>> = [
      { bnTerms: 'drop-mean' }, { bnTerms: 'drop-xhat' }, { reluMask: 'none' }, { reluMask: 'bn-input' }, { dGamma: 'dy' },
      { swapGammaBeta: true }, { l2Factor: 1 }, { lossGradient: 'sum' }, { biasBeforeBn: 'upstream' },
    ];
    for (const knobs of backwardSwitches) expect(relativeDistance(gradients(reference, c.net, c.x, c.labels, 0.01, { ...CORRECT, ...knobs }), exact), JSON.stringify(knobs)).toBeGreaterThan(1e-2);
    const costOf = (knobs: Partial<Knobs>) => cost(reference, c.net, forward(reference, c.net, c.x, { ...CORRECT, ...knobs }), c.labels, 0.01, { ...CORRECT, ...knobs });
    for (const knobs of [{ statistics: 'running' }, { variance: 'unbiased' }, { epsPlacement: 'outside' }, { eps: 1e-5 }, { loss: 'sum' }, { penalty: 0.5 }] as Array<Partial<Knobs>>)
      expect(Math.abs(costOf(knobs) - c.cost), JSON.stringify(knobs)).toBeGreaterThan(1e-6);
    // The network itself is never changed.
    expect(reference.cost(c.net, c.x, c.labels, 0.01).cost).toBe(c.cost);
  });
});
