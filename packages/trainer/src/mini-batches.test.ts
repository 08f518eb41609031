import { describe, expect, test } from 'vitest';
import { MiniBatcher } from './mini-batches.js';
import { TrainerArgumentError } from './errors.js';

/** Row i holds [i, i + 0.5] and label i % 3, so every copied row can be traced to its source. */
function numberedSet(rows: number) {
  const data = new Float32Array(rows * 2);
  for (let i = 0; i < rows; i++) data.set([i, i + 0.5], i * 2);
  return { x: { rows, cols: 2, data }, labels: Int32Array.from({ length: rows }, (_, i) => i % 3) };
}

describe('MiniBatcher', () => {
  test('an epoch visits every row at most once, whole batches only (drop last)', () => {
    const batcher = new MiniBatcher(numberedSet(10), 3, 7);
    batcher.shuffle();
    expect(batcher.batchesPerEpoch).toBe(3);
    const seen: number[] = [];
    for (let b = 0; b < batcher.batchesPerEpoch; b++) {
      const { x, labels } = batcher.batch(b);
      expect(x.rows).toBe(3);
      for (let r = 0; r < 3; r++) {
        const row = x.data[r * 2];
        expect(x.data[r * 2 + 1]).toBe(row + 0.5);
        expect(labels[r]).toBe(row % 3);
        seen.push(row);
      }
    }
    expect(new Set(seen).size).toBe(9);
  });

  test('shuffles are seeded: same seed same order, new epochs new orders', () => {
    const orderOf = (batcher: MiniBatcher) => Array.from(batcher.batch(0).x.data.filter((_, i) => i % 2 === 0));
    const a = new MiniBatcher(numberedSet(50), 50, 1);
    const b = new MiniBatcher(numberedSet(50), 50, 1);
    a.shuffle();
    b.shuffle();
    const first = orderOf(a);
    expect(orderOf(b)).toEqual(first);
    expect(first).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    a.shuffle();
    expect(orderOf(a)).not.toEqual(first);
  });

  test('rejects a batch size outside [1, rows] and mismatched labels', () => {
    expect(() => new MiniBatcher(numberedSet(4), 5)).toThrow(TrainerArgumentError);
    expect(() => new MiniBatcher(numberedSet(4), 0)).toThrow(/batchSize/);
    expect(() => new MiniBatcher({ ...numberedSet(4), labels: new Int32Array(3) }, 2)).toThrow(/labels/);
  });
});
