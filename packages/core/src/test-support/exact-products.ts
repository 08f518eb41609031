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
