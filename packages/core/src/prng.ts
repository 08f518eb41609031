/**
 * The seeded PRNG of @bnmlp/reference (mulberry32 + Box–Muller), repeated here because the core
 * may not depend on the reference at run time. prng.test.ts checks that both draw the same
 * sequence, so a core model and a reference network created from one seed hold the same weights
 * (the core's rounded to float32).
 */
export interface Prng {
  state: number;
}

export function createPrng(seed: number): Prng {
  return { state: seed >>> 0 };
}

export function nextUniform(prng: Prng): number {
  prng.state = (prng.state + 0x6d2b79f5) >>> 0;
  let t = prng.state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

export function nextNormal(prng: Prng): number {
  const u1 = 1 - nextUniform(prng);
  const u2 = nextUniform(prng);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

export function nextInt(prng: Prng, n: number): number {
  return Math.floor(nextUniform(prng) * n);
}
