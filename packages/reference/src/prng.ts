/**
 * A small seeded PRNG (mulberry32) whose whole state is one plain number, so a test can
 * snapshot it and check that an operation left it untouched (`{ ...prng }` deep-equals).
 */
export interface Prng {
  state: number;
}

export function createPrng(seed: number): Prng {
  return { state: seed >>> 0 };
}

/** Uniform in [0, 1). */
export function nextUniform(prng: Prng): number {
  prng.state = (prng.state + 0x6d2b79f5) >>> 0;
  let t = prng.state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Standard normal by Box–Muller (one draw per call; no cached spare, so the state stays one number). */
export function nextNormal(prng: Prng): number {
  const u1 = 1 - nextUniform(prng); // (0, 1]: log stays finite
  const u2 = nextUniform(prng);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Integer in [0, n). */
export function nextInt(prng: Prng, n: number): number {
  return Math.floor(nextUniform(prng) * n);
}
