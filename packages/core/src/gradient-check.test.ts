import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import { costAndGradients } from './api.js';
import { disposeModel, type CoreModel } from './model.js';
import { availableBackends, useBackend } from './test-support/backends.js';
import { caseArbitrary, caseData, coreModelOf, referenceMatrix, referenceOf, sameReluSides, type Case } from './test-support/arbitraries.js';
import { expectClose, gradientLimits, roundingBounds } from './test-support/compare.js';
import { directionalCheck, randomDirection, DIRECTIONAL_EPS } from './test-support/directional.js';

// The core's float32 analytic gradients judged by finite differences: (a) the reference's float64
// centered differences on the core's exact weights, (b) the core's own float32 cost along random
// directions. Both must also reject a deliberately wrong gradient.
const backends = await availableBackends();
console.info(`gradient-check suite backends: ${backends.join(', ')}`);

/*
Tolerances for (a). The reference checker passes an entry when its relative error
|a − n|/(|a| + |n|) ≤ tolerance or |a − n| ≤ absoluteFloor.
  - tolerance 2e-3 = TOLERANCES.gradient, the relative part of the core-vs-reference gradient
    limit: float32 loses a digit or two in BN's backward, and the reference's own h = 1e-6
    difference is off by up to 5e-5 on ill-conditioned BN (its Note [Ill-conditioned batch norm]).
  - absoluteFloor = the float32 rounding bound of that parameter's gradient (compare.ts's
    gradientLimits(...).absolute = 4·u·bound_p, u = 2⁻²⁴, bound_p from the running-error
    analysis with first-order products) + the checker's own float64 floor
    64·ε₆₄·max(1, |J|)/h. The reference's floor assumes float64 analytic gradients; a float32 one
    is off by ~u·(size of the terms it summed) in absolute terms, whatever the entry's size, so
    small entries (and the exact-zero bias before BN) are judged by the bound, not relatively.
*/
const RELATIVE_TOLERANCE = 2e-3;
// The floor uses first-order products (RoundingBoundsOptions.firstOrderProducts in compare.ts):
// with the default bounds the floor of ~5 % of the parameters here (18 % over equivalence.test.ts's
// space) exceeds their largest gradient entry, which would make the check vacuous for them.
const FIRST_ORDER = { firstOrderProducts: true } as const;
const H = ref.DEFAULT_GRADIENT_CHECK.h;

const stats = { cases: 0, kinkSkips: 0, entries: 0, belowFloor: 0, worstRelative: 0, parameters: 0, vacuousFloors: 0, directional: 0, directionalKinks: 0, worstDirectional: 0, vacuousDirectional: 0 };
afterAll(() =>
  console.info(
    `gradient check: (a) ${stats.cases} cases, ${stats.entries} entries vs float64 centered differences, ${stats.belowFloor} passed by the float32 floor, ` +
      `largest relative error counted ${stats.worstRelative.toExponential(2)} (tolerance ${RELATIVE_TOLERANCE}), ${stats.kinkSkips} cases skipped at ReLU kinks; ` +
      `parameters whose floor ≥ their largest |gradient| (check vacuous there): ${stats.vacuousFloors} of ${stats.parameters}; ` +
      `(b) ${stats.directional} float32 directional checks (ε = ${DIRECTIONAL_EPS}), worst fraction of limit used ${stats.worstDirectional.toFixed(3)}, ` +
      `limit ≥ |derivative| (vacuous): ${stats.vacuousDirectional}, ${stats.directionalKinks} skipped at kinks`,
  ),
);

function analyticOf(model: CoreModel, c: Case, data = caseData(c)): Record<string, Float32Array> {
  const core = costAndGradients(model, data.x, data.labels, c.lambda);
  return Object.fromEntries(Object.entries(core.gradients).map(([name, g]) => [name, g.values]));
}

/** The reference's entry-by-entry check of `analytic` on the core's weights, one call per parameter (each with its own float32 floor). */
function referenceCheck(model: CoreModel, c: Case, analytic: Record<string, ArrayLike<number>>): ref.GradientCheckReport[] {
  const data = caseData(c);
  const net = referenceOf(model);
  const x64 = referenceMatrix(data.x);
  const base = ref.forward(net, x64, 'train');
  const floors = gradientLimits(roundingBounds(net, base, data.labels, FIRST_ORDER));
  const cost = ref.costFromForward(net, base, data.labels, c.lambda).cost;
  const float64Floor = (64 * Number.EPSILON * Math.max(1, Math.abs(cost))) / H;
  return ref.parameters(net).map((p) =>
    ref.gradientCheck(net, x64, data.labels, c.lambda, { analytic, only: [p.name], h: H, tolerance: RELATIVE_TOLERANCE, absoluteFloor: floors[p.name].absolute! + float64Floor }),
  );
}

function reluSidesAgree(model: CoreModel, c: Case): boolean {
  return sameReluSides(model, referenceOf(model), caseData(c).x, 'train');
}

const smallToMedium = caseArbitrary({ maxInput: 12, maxWidth: 10, maxBatch: 12, maxDepth: 4 });

/** Fixed cases for the "rejects a wrong gradient" tests: with BN (two hidden layers) and without (one). */
const wrongGradientCases: Case[] = [
  { inputDim: 6, hiddenDims: [5, 4], classes: 3, batch: 8, batchNorm: true, bnAffine: true, lambda: 0.01, seed: 11 },
  { inputDim: 4, hiddenDims: [6], classes: 4, batch: 6, batchNorm: false, bnAffine: false, lambda: 0, seed: 5 },
];

describe.each(backends)('gradient checks of the core on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  test('(a) float32 analytic gradients pass the reference float64 centered-difference check on the same weights', () => {
    fc.assert(
      fc.property(smallToMedium, (c) => {
        // Arrange
        const model = coreModelOf(caseData(c));
        try {
          // float32 and float64 on different sides of a ReLU kink: not the same function locally.
          const comparable = reluSidesAgree(model, c);
          if (!comparable) stats.kinkSkips++;
          fc.pre(comparable);
          const analytic = analyticOf(model, c);

          // Act
          const reports = referenceCheck(model, c, analytic);

          // Assert (GradientCheckError names the worst entry; fast-check adds the case)
          for (const report of reports) ref.assertGradientCheck(report);
          stats.cases++;
          for (const report of reports) {
            const p = report.parameters[0];
            // (the bias before BN is exactly 0: nothing to be vacuous about)
            if (!p.analyticExactlyZero) stats.parameters++;
            if (!p.analyticExactlyZero && report.absoluteFloor >= p.maxAbsNumeric) stats.vacuousFloors++;
            stats.entries += p.evaluated - p.skippedKinks;
            stats.belowFloor += p.belowFloor;
            stats.worstRelative = Math.max(stats.worstRelative, p.maxRelativeError);
          }
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  test.each(wrongGradientCases)('(a) the reference check rejects core gradients with one block sign-flipped ($hiddenDims, BN $batchNorm)', (c) => {
    // Arrange
    const model = coreModelOf(caseData(c));
    try {
      const analytic = analyticOf(model, c);
      const last = `W${c.hiddenDims.length + 1}`;
      const corrupted = { ...analytic, [last]: analytic[last].map((v) => -v) };

      // Act
      const honest = referenceCheck(model, c, analytic);
      const wrong = referenceCheck(model, c, corrupted);

      // Assert
      expect(honest.every((r) => r.passed)).toBe(true);
      expect(wrong.filter((r) => !r.passed).map((r) => r.parameters[0].name)).toEqual([last]);
    } finally {
      disposeModel(model);
    }
  });

  test('(b) float32 random-direction check: ⟨t, ∇J⟩ matches (J(θ+εt) − J(θ−εt))/(2ε) computed by the core', () => {
    fc.assert(
      fc.property(smallToMedium, fc.nat(), (c, directionSeed) => {
        // Arrange
        const data = caseData(c);
        const model = coreModelOf(data);
        try {
          const analytic = analyticOf(model, c, data);
          const t = randomDirection(model, directionSeed);

          // Act
          const check = directionalCheck(model, data.x, data.labels, c.lambda, analytic, t);

          // Assert: skip (and count) segments that cross a ReLU kink, where J is not smooth.
          if (check.kink) stats.directionalKinks++;
          fc.pre(!check.kink);
          const cmp = expectClose(`directional (${backend})`, `⟨t, ∇J⟩ [roundoff ${check.budget.roundoff.toExponential(1)}, truncation ${check.budget.truncation.toExponential(1)}, analytic ${check.budget.analytic.toExponential(1)}]`, [1], [check.analytic], [check.numeric], check.limit);
          stats.directional++;
          stats.worstDirectional = Math.max(stats.worstDirectional, cmp.usedOfLimit);
          if (check.limit.tolerance * Math.abs(check.numeric) + check.limit.absolute! >= Math.abs(check.numeric)) stats.vacuousDirectional++;
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  test.each(wrongGradientCases)('(b) the directional check rejects the gradient with one block sign-flipped ($hiddenDims, BN $batchNorm)', (c) => {
    // Arrange: flip the block that contributes most to ⟨t, ∇J⟩, so the wrong value differs by
    // 2·|⟨t_block, ∇_block J⟩|.
    const data = caseData(c);
    const model = coreModelOf(data);
    try {
      const analytic = analyticOf(model, c, data);
      const t = randomDirection(model, 3);
      const contribution = (name: string) => Math.abs(analytic[name].reduce((s, g, i) => s + g * t[name][i], 0));
      const block = Object.keys(analytic).reduce((best, name) => (contribution(name) > contribution(best) ? name : best));
      const corrupted = { ...analytic, [block]: analytic[block].map((v) => -v) };

      // Act
      const honest = directionalCheck(model, data.x, data.labels, c.lambda, analytic, t);
      const wrong = directionalCheck(model, data.x, data.labels, c.lambda, corrupted, t);

      // Assert
      expect(honest.kink).toBe(false);
      expectClose('directional, honest', '⟨t, ∇J⟩', [1], [honest.analytic], [honest.numeric], honest.limit);
      expect(() => expectClose('directional, corrupted', `⟨t, ∇J⟩ with ${block} flipped`, [1], [wrong.analytic], [wrong.numeric], wrong.limit)).toThrow(/mismatch/);
    } finally {
      disposeModel(model);
    }
  });
});
