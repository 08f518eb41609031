import { Decimal } from 'decimal.js';
import { describe, expect, it } from 'vitest';
import { decimalCost } from './decimal-oracle.js';
import { describeFailures, gradientCheck, relativeError, type GradientCheckOptions } from './gradient-check.js';
import { fromRows, type Matrix } from './matrix.js';
import { costAndGradients, forward, type ForwardResult } from './model.js';
import { createNetwork, parameters, type Network } from './network.js';
import { createPrng, nextInt, nextNormal } from './prng.js';
import { gradientOf } from './sgd.js';
import { expectArgumentError } from './test-support/assertions.js';
import { buildNetworkCase, type NetworkCaseSpec } from './test-support/arbitraries.js';

// Tests written against the non-equivalent mutants that survived the StrykerJS run over
// gradient-check.ts and decimal-oracle.ts (docs/mutation.md, "gradient-check.ts — gradientCheck
// argument errors" to "decimal-oracle.ts — decCost"). Each names the mutants it kills as file:line:col.

const spec: NetworkCaseSpec = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };

/** The package's own gradients, by parameter name, as fresh arrays a test may corrupt. */
function trueGradients(net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number): Record<string, Float64Array> {
  const grads = costAndGradients(net, x, labels, lambda).gradients;
  return Object.fromEntries(parameters(net).map((p) => [p.name, Float64Array.from(gradientOf(grads, p))]));
}

/** The entries of `n` that differ from `original` (same architecture): parameter name, flat index and offset. */
function moved(original: Network, n: Network): Array<{ name: string; index: number; delta: number }> {
  const before = parameters(original);
  return parameters(n).flatMap((ref, p) =>
    Array.from(ref.values, (v, index) => ({ name: ref.name, index, delta: v - before[p].values[index] })).filter((e) => e.delta !== 0),
  );
}

/** Negates every hidden pre-activation of a forward result in place, so every ReLU changes branch. */
function flipHiddenSigns(result: ForwardResult): ForwardResult {
  for (const cache of result.layers.slice(0, -1)) for (let i = 0; i < cache.preActivation.data.length; i++) cache.preActivation.data[i] *= -1;
  return result;
}

describe('gradientCheck argument errors name the operation', () => {
  const { net, x, labels, lambda } = buildNetworkCase(spec);

  // Kills gradient-check.ts:193:40 and gradient-check.ts:197:65 (op name '' in the error).
  it('bad maxEntriesPerParameter, directions and only are ReferenceArgumentErrors of op gradientCheck, and say so in the message', () => {
    const cases: Array<[GradientCheckOptions, string, string, string]> = [
      [{ maxEntriesPerParameter: 0 }, 'maxEntriesPerParameter', 'a positive integer', '0'],
      [{ mode: 'directional', directions: 2.5 }, 'directions', 'a positive integer', '2.5'],
      [{ only: ['W1', 'gamma9'] }, 'only', 'parameter names among W1, b1, gamma1, beta1, W2, b2', "'gamma9'"],
    ];
    for (const [options, argument, expected, actual] of cases) {
      const error = expectArgumentError(() => gradientCheck(net, x, labels, lambda, options), { op: 'gradientCheck', argument, expected, actual });
      expect(error.message).toBe(`gradientCheck: argument '${argument}' must be ${expected}, got ${actual}`);
    }
  });
});

describe('ReLU kinks at a pre-activation of exactly 0 (gradient-check.ts reluMask)', () => {
  // One hidden unit, no batch norm, one row x = 1: the unit's pre-activation is W1·1 + b1, exact in
  // float64 for these dyadic values, so a step of h moves it from ∓h to exactly 0.
  const h = 2 ** -20;
  const unit = (preActivation: number) => {
    const net = createNetwork({ inputDim: 1, hiddenDims: [1], classes: 2, batchNorm: false }, { kind: 'he' }, createPrng(3));
    net.layers[0].W.data[0] = 0.25;
    net.layers[0].b[0] = preActivation - 0.25;
    net.layers[1].W.data.set([1.5, -0.5]);
    net.layers[1].b.set([0.125, -0.25]);
    return net;
  };
  const x = fromRows([[1]]);
  const kinks = (net: Network, precision: 'float64' | 'double-double') =>
    Object.fromEntries(gradientCheck(net, x, [1], 0.1, { h, precision, only: ['W1', 'b1'] }).parameters.map((p) => [p.name, p.skippedKinks]));

  // Kills gradient-check.ts:278:77 (`v >= 0`: relu(0) counted as the active branch).
  it('a unit is active only for v > 0: reaching 0 from below is no kink, reaching 0 from above is; both precisions agree', () => {
    // Arrange: v = −h at θ, so θ + h gives v = 0 (ReLU still outputs 0: J is smooth there)...
    const fromBelow = unit(-h);
    // ...and v = +h at θ, so θ − h gives v = 0, the inactive branch: a change of branch.
    const fromAbove = unit(h);
    expect(forward(fromBelow, x).layers[0].preActivation.data[0]).toBe(-h);
    expect(forward(fromAbove, x).layers[0].preActivation.data[0]).toBe(h);

    // Act / Assert: double-double (DoubleDoubleCost) is the independent judge of the same rule.
    for (const precision of ['float64', 'double-double'] as const) {
      expect(kinks(fromBelow, precision), precision).toEqual({ W1: 0, b1: 0 });
      expect(kinks(fromAbove, precision), precision).toEqual({ W1: 1, b1: 1 });
    }
    const below = gradientCheck(fromBelow, x, [1], 0.1, { h, only: ['W1', 'b1'] });
    expect(below.passed).toBe(true);
  });
});

describe('entry sampling (gradient-check.ts chooseEntries)', () => {
  const small: NetworkCaseSpec = { inputDim: 3, hiddenDims: [4], classes: 2, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.05, seed: 11 };
  const { net, x, labels, lambda } = buildNetworkCase(small);
  // W1 has 12 entries, b1, gamma1 and beta1 have 4, W2 has 8, b2 has 2.
  const limit = 4;

  /** Per parameter, the entries the numeric side perturbed, in order (float64 side, one spy call per pass). */
  const sampled = (options: GradientCheckOptions): Record<string, number[]> => {
    const seen: Record<string, number[]> = {};
    const spy = (n: Network, input: Matrix): ForwardResult => {
      const [entry, ...rest] = moved(net, n);
      expect(rest).toEqual([]);
      if (entry) {
        const list = (seen[entry.name] ??= []);
        if (list.at(-1) !== entry.index) list.push(entry.index);
      }
      return forward(n, input, 'train');
    };
    gradientCheck(net, x, labels, lambda, { ...options, maxEntriesPerParameter: limit, numericForward: spy });
    return seen;
  };

  /** Independent model of the documented sampling: a partial Fisher–Yates shuffle of `limit` draws per sampled parameter, on one PRNG. */
  const expectedSample = (seed: number, sizes: Record<string, number>): Record<string, number[]> => {
    const prng = createPrng(seed);
    return Object.fromEntries(
      Object.entries(sizes).map(([name, count]) => {
        const all = Array.from({ length: count }, (_, i) => i);
        if (count <= limit) return [name, all];
        for (let i = 0; i < limit; i++) {
          const j = i + nextInt(prng, count - i);
          [all[i], all[j]] = [all[j], all[i]];
        }
        return [name, all.slice(0, limit).sort((a, b) => a - b)];
      }),
    );
  };

  // Kills gradient-check.ts:289:30 (`limit > count`: a parameter of exactly `limit` entries shuffles, taking draws).
  it('a parameter checked in full (size ≤ maxEntriesPerParameter) takes no random draws: adding it to `only` leaves the other samples unchanged', () => {
    for (const seed of [1, 2, 3]) {
      const alone = sampled({ seed, only: ['W1', 'W2'] });
      const withFull = sampled({ seed, only: ['W1', 'b1', 'gamma1', 'beta1', 'W2', 'b2'] });

      expect(withFull.b1).toEqual([0, 1, 2, 3]);
      expect(withFull.gamma1).toEqual([0, 1, 2, 3]);
      expect(withFull.b2).toEqual([0, 1]);
      expect(withFull.W1, `seed ${seed}`).toEqual(alone.W1);
      expect(withFull.W2, `seed ${seed}`).toEqual(alone.W2);
    }
  });

  // Kills gradient-check.ts:290:19 (`i <= limit`: one extra draw per sampled parameter) and 289:30.
  it('the sample is reproducible from the seed alone: `limit` Fisher–Yates draws per sampled parameter, in parameter order, on one PRNG', () => {
    const sizes = { W1: 12, b1: 4, gamma1: 4, beta1: 4, W2: 8, b2: 2 };
    for (const seed of [1, 2, 3, 4]) expect(sampled({ seed }), `seed ${seed}`).toEqual(expectedSample(seed, sizes));
  });
});

describe('the pass/fail boundaries (gradient-check.ts ErrorTally.add)', () => {
  // A one-entry parameter (β of a width-1 BN layer), so the report's worst entry is that entry.
  const { net, x, labels, lambda } = buildNetworkCase({ ...spec, hiddenDims: [1] });
  const probe = gradientCheck(net, x, labels, lambda, { only: ['beta1'] }).parameters[0];
  const numeric = probe.worst!.numeric;
  const check = (analytic: number, options: GradientCheckOptions) =>
    gradientCheck(net, x, labels, lambda, { ...options, only: ['beta1'], analytic: { beta1: [analytic] } }).parameters[0];

  it('the probe entry is compared, with a numeric derivative well away from 0', () => {
    expect(probe).toMatchObject({ evaluated: 1, skippedKinks: 0, passed: true });
    expect(Math.abs(numeric)).toBeGreaterThan(1e-3);
  });

  // Kills gradient-check.ts:319:21 (`relative >= tolerance`: an entry exactly at the tolerance is excused by the floor).
  it('relative error exactly equal to the tolerance passes by relative error (r ≤ tolerance) and is reported with its true r, not as excused', () => {
    const analytic = numeric * (1 + 1e-3);
    const tolerance = relativeError(analytic, numeric);

    const entry = check(analytic, { tolerance, absoluteFloor: 1 });

    expect(entry).toMatchObject({ belowFloor: 0, failures: 0, passed: true, maxRelativeError: tolerance, meanRelativeError: tolerance });
    expect(entry.worst!.relativeError).toBe(tolerance);
  });

  // Kills gradient-check.ts:319:50 (`diff < absoluteFloor`: the floor made exclusive).
  it('|analytic − numeric| exactly equal to the absolute floor is excused (|a − n| ≤ floor)', () => {
    const analytic = numeric + 1e-3 * Math.abs(numeric);
    const absoluteFloor = Math.abs(analytic - numeric);
    expect(relativeError(analytic, numeric)).toBeGreaterThan(1e-6);

    const entry = check(analytic, { absoluteFloor });

    expect(entry).toMatchObject({ belowFloor: 1, failures: 0, passed: true, maxRelativeError: 0 });
    // One step past the floor and it counts as a failure.
    expect(check(analytic, { absoluteFloor: absoluteFloor * (1 - 2 ** -50) })).toMatchObject({ belowFloor: 0, failures: 1, passed: false });
  });
});

describe('the worst entry (gradient-check.ts ErrorTally.add)', () => {
  const { net, x, labels, lambda } = buildNetworkCase(spec);

  // Kills gradient-check.ts:328:29 (`diff * absoluteFloor`: excused entries outrank counted ones once diff·floor > 2).
  it('an entry excused by a large user floor (10, |diff| ≈ 5) ranks below every counted entry', () => {
    const analytic = trueGradients(net, x, labels, lambda);
    analytic.b2[0] += 5;

    const b2 = gradientCheck(net, x, labels, lambda, { only: ['b2'], analytic, absoluteFloor: 10 }).parameters[0];

    expect(b2).toMatchObject({ evaluated: 3, belowFloor: 1, failures: 0, passed: true });
    expect(b2.worst!.index).not.toEqual([0]);
    expect(b2.worst!.relativeError).toBe(b2.maxRelativeError);
    expect(b2.worst!.diff).toBeLessThan(1e-6);
  });

  // Kills gradient-check.ts:329:9 (`score >= worstScore`: ties go to the later entry).
  it('on exactly equal errors the worst entry is the first in index order (an all-zero analytic b2: relative error 1 everywhere)', () => {
    const analytic = { b2: new Float64Array(3) };

    const report = gradientCheck(net, x, labels, lambda, { only: ['b2'], analytic });
    const b2 = report.parameters[0];

    expect(b2).toMatchObject({ failures: 3, belowFloor: 0, maxRelativeError: 1, meanRelativeError: 1 });
    expect(b2.worst).toMatchObject({ index: [0], relativeError: 1 });
    expect(describeFailures(report)).toMatch(/^gradient mismatch for b2\[0\]: /);
  });
});

describe('kinks and the failure message (gradient-check.ts centered, describeFailures)', () => {
  const { net, x, labels, lambda } = buildNetworkCase(spec);

  // Kills gradient-check.ts:379:7 (`near === null` → false: stencil 4 returns −D(2h)/3 when ±h is a kink).
  it('stencil 4: a branch change at ±h alone (not at ±2h) skips the entry', () => {
    const h = 1e-3;
    // The numeric forward flips every ReLU on the ±h passes of W1's entries, not on ±2h.
    const flipNear = (n: Network, input: Matrix): ForwardResult => {
      const [entry] = moved(net, n);
      const result = forward(n, input, 'train');
      return entry && Math.abs(entry.delta) < 1.5 * h ? flipHiddenSigns(result) : result;
    };

    const report = gradientCheck(net, x, labels, lambda, { only: ['W1'], stencil: 4, precision: 'float64', h, numericForward: flipNear });

    expect(report.parameters[0]).toMatchObject({ evaluated: 20, skippedKinks: 20, worst: null, passed: false });
    expect(describeFailures(report)).toBe('gradient of W1 not verified: all 20 evaluated entries were skipped at ReLU kinks');
  });

  // Kills gradient-check.ts:418:82 (`evaluated + skippedKinks` in "N of M compared entries").
  it('the failure message counts compared entries as evaluated − skipped: 3 kinks and 1 wrong entry of 20 give "1 of 17"', () => {
    // W1 entries 0, 1, 2 sit at (simulated) kinks; entry 5 = W1[1,0] has a 1 % error.
    const kinkAt = new Set([0, 1, 2]);
    const flipSome = (n: Network, input: Matrix): ForwardResult => {
      const [entry] = moved(net, n);
      const result = forward(n, input, 'train');
      return entry && kinkAt.has(entry.index) ? flipHiddenSigns(result) : result;
    };
    const analytic = trueGradients(net, x, labels, lambda);
    analytic.W1[5] *= 1.01;

    const report = gradientCheck(net, x, labels, lambda, { only: ['W1'], analytic, numericForward: flipSome });

    expect(report.parameters[0]).toMatchObject({ evaluated: 20, skippedKinks: 3, failures: 1, passed: false });
    expect(describeFailures(report)).toMatch(/^gradient mismatch for W1\[1,0\]: .*; 1 of 17 compared entries fail$/);
  });
});

describe('directional mode directions (gradient-check.ts checkDirections)', () => {
  const { net, x, labels, lambda } = buildNetworkCase(spec);

  // Kills gradient-check.ts:393:21 (`i <= u.length`: one more normal drawn and added to the norm).
  it('each direction is a unit vector of the seed’s next normals: direction d of an n-entry parameter normalizes normals d·n … d·n + n − 1', () => {
    const h = 1e-3;
    const seed = 7;
    const directions = 3;
    // The +h·u pass of each direction, seen by a spy on the float64 side: u = (θ + h·u − θ) / h.
    const passes: Float64Array[] = [];
    const spy = (n: Network, input: Matrix): ForwardResult => {
      const offsets = moved(net, n);
      if (offsets.length > 0) {
        const u = new Float64Array(20);
        for (const e of offsets) u[e.index] = e.delta / h;
        passes.push(u);
      }
      return forward(n, input, 'train');
    };

    gradientCheck(net, x, labels, lambda, { only: ['W1'], mode: 'directional', directions, seed, h, numericForward: spy });

    const plus = passes.filter((_, k) => k % 2 === 0);
    expect(plus).toHaveLength(directions);
    const prng = createPrng(seed);
    for (let d = 0; d < directions; d++) {
      const normals = Array.from({ length: 20 }, () => nextNormal(prng));
      const norm = Math.hypot(...normals);
      expect(Math.hypot(...plus[d]), `‖u_${d}‖`).toBeCloseTo(1, 10);
      for (let i = 0; i < 20; i++) expect(plus[d][i], `u_${d}[${i}]`).toBeCloseTo(normals[i] / norm, 10);
    }
  });
});

describe('the decimal oracle’s log-sum-exp (decimal-oracle.ts decCost)', () => {
  // Kills decimal-oracle.ts:102:17 (`DecimalJs.min(...row)` as the shift).
  it('shifts by the row maximum: a confident row’s loss ln(1 + e^−L) keeps absolute error ≤ 1e-49 at 50 digits, however far apart the logits', () => {
    // One linear layer, x = 1, W = (0, −L), b = 0: logits (0, −L), label 0, λ = 0, so J = ln(1 + e^−L).
    // Shifted by the maximum 0, the only rounding that matters is that of 1 + e^−L to 50 digits
    // (≤ 5e-50); shifted by the minimum, ln(e^L + 1) ≈ L is rounded to 50 digits at L's scale.
    const Truth = Decimal.clone({ precision: 120 });
    for (const L of [32, 35, 100]) {
      const net = createNetwork({ inputDim: 1, hiddenDims: [], classes: 2 });
      net.layers[0].W.data.set([0, -L]);
      net.layers[0].b.fill(0);
      const truth = new Truth(-L).exp().plus(1).ln();

      const j = decimalCost(net, fromRows([[1]]), [0], 0);

      expect(new Truth(j).minus(truth).abs().toNumber(), `L = ${L}`).toBeLessThanOrEqual(1e-49);
    }
  });
});
