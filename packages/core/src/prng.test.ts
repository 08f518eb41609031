import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import { createPrng, nextInt, nextNormal, nextUniform } from './prng.js';

// The core repeats the reference's PRNG (it may not depend on the reference at run time); these
// tests hold the two copies to the same sequence, which is what makes createModel(seed) and
// createNetwork(seed) produce the same weights.
describe('core PRNG = reference PRNG', () => {
  const seeds = [0, 1, 42, 12345, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, -1, -(2 ** 31)];

  test.each(seeds)('seed %i: 1000 mixed draws (uniform, normal, int) are identical and leave identical states', (seed) => {
    // Arrange
    const core = createPrng(seed);
    const reference = ref.createPrng(seed);
    const draws = (p: { state: number }, uniform: typeof nextUniform, normal: typeof nextNormal, int: typeof nextInt) =>
      Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? uniform(p) : i % 3 === 1 ? normal(p) : int(p, 1 + (i % 17))));

    // Act
    const fromCore = draws(core, nextUniform, nextNormal, nextInt);
    const fromReference = draws(reference, ref.nextUniform, ref.nextNormal, ref.nextInt);

    // Assert
    expect(fromCore).toEqual(fromReference);
    expect(core).toEqual(reference);
  });

  test('any 32-bit seed: the first 64 normals agree bit for bit', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }), (seed) => {
        const core = createPrng(seed);
        const reference = ref.createPrng(seed);
        for (let i = 0; i < 64; i++) expect(Object.is(nextNormal(core), ref.nextNormal(reference))).toBe(true);
      }),
    );
  });

  test('different seeds give different sequences (the comparison above is not vacuous)', () => {
    const a = createPrng(1);
    const b = createPrng(2);
    expect(Array.from({ length: 8 }, () => nextUniform(a))).not.toEqual(Array.from({ length: 8 }, () => nextUniform(b)));
  });
});
