/** x·W + b in float64 for row-major x [m×k], W [k×n], b [n]: exact when the operands are small integers. */
export function exactScores(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let sum = b[j];
      for (let p = 0; p < k; p++) sum += x[i * k + p] * w[p * n + j];
      out.push(sum);
    }
  return out;
}

/**
 * A source of small integers in [−3, 3] (a linear congruential sequence, a new seed per call):
 * products and sums of them are exact in float32 whatever the summation order.
 */
export function smallIntegerSource(): (size: number) => Float32Array {
  let nextSeed = 1;
  return (size) => {
    let s = nextSeed++ * 7919;
    return Float32Array.from({ length: size }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return ((s >>> 16) % 7) - 3;
    });
  };
}
