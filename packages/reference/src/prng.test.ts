import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createPrng, nextInt, nextNormal, nextUniform } from './prng.js';
import { seedArb } from './test-support/arbitraries.js';

describe('prng', () => {
  it('is deterministic for a seed and its state is one plain number', () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        const a = createPrng(seed);
        const b = createPrng(seed);

        const drawsA = Array.from({ length: 20 }, () => nextUniform(a));
        const drawsB = Array.from({ length: 20 }, () => nextUniform(b));

        expect(drawsA).toEqual(drawsB);
        expect(a).toEqual({ state: b.state });
      }),
    );
  });

  it('different seeds give different streams', () => {
    const a = createPrng(1);
    const b = createPrng(2);

    expect(Array.from({ length: 5 }, () => nextUniform(a))).not.toEqual(Array.from({ length: 5 }, () => nextUniform(b)));
  });

  it('a copied state continues the same stream (snapshots restore exactly)', () => {
    const prng = createPrng(123);
    nextUniform(prng);
    const snapshot = { ...prng };

    const next = nextUniform(prng);

    expect(nextUniform(snapshot)).toBe(next);
  });

  it('nextUniform stays in [0, 1) and nextInt in [0, n)', () => {
    fc.assert(
      fc.property(seedArb, fc.integer({ min: 1, max: 1000 }), (seed, n) => {
        const prng = createPrng(seed);
        for (let i = 0; i < 200; i++) {
          const u = nextUniform(prng);
          expect(u).toBeGreaterThanOrEqual(0);
          expect(u).toBeLessThan(1);
          const k = nextInt(prng, n);
          expect(Number.isInteger(k) && k >= 0 && k < n).toBe(true);
        }
      }),
    );
  });

  it('nextInt covers every value of a small range roughly uniformly', () => {
    const prng = createPrng(7);
    const counts = new Array(5).fill(0);

    for (let i = 0; i < 50_000; i++) counts[nextInt(prng, 5)]++;

    // Expected 10 000 each; binomial std ≈ 89, so ±500 is > 5 std.
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });

  it('nextNormal has mean ≈ 0 and variance ≈ 1', () => {
    const prng = createPrng(2024);
    const n = 100_000;
    let sum = 0;
    let sumSq = 0;

    for (let i = 0; i < n; i++) {
      const z = nextNormal(prng);
      sum += z;
      sumSq += z * z;
    }
    const mean = sum / n;
    const variance = sumSq / n - mean * mean;

    // Standard errors: mean 1/sqrt(n) ≈ 0.003, variance sqrt(2/n) ≈ 0.0045.
    expect(Math.abs(mean)).toBeLessThan(0.015);
    expect(Math.abs(variance - 1)).toBeLessThan(0.025);
  });
});
