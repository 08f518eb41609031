import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { backendInfo, configureKernelThreads, createModel, disposeModel, forward, initBackend } from '@bnmlp/core';
import { sharedFloat32Array } from './cifar.js';
import type { FlipTransform } from './flip.js';
import { MiniBatcher } from './mini-batches.js';
import { TrainerArgumentError } from './errors.js';

/**
 * Row i holds [i, i + 0.5] and label i % 3, so every copied row can be traced to its source. On a
 * SharedArrayBuffer with `shared`, as the trainer's standardised sets (sharedFloat32Array).
 */
function numberedSet(rows: number, shared = false) {
  const data = shared ? sharedFloat32Array(rows * 2) : new Float32Array(rows * 2);
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

describe('MiniBatcher: remainders, flips and state', () => {
  test('keepRemainder trains on the last, smaller batch; one below minBatchRows is dropped', () => {
    const kept = new MiniBatcher(numberedSet(10), 4, 1, { keepRemainder: true, minBatchRows: 2 });
    expect([kept.batchesPerEpoch, kept.lastBatchRows, kept.droppedRows]).toEqual([3, 2, 0]);
    kept.shuffle();
    const rows = [0, 1, 2].flatMap((b) => Array.from(kept.batch(b).x.data.filter((_, i) => i % 2 === 0)));
    expect(rows.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(kept.batch(2).labels).toHaveLength(2);

    const single = new MiniBatcher(numberedSet(9), 4, 1, { keepRemainder: true, minBatchRows: 2 });
    expect([single.batchesPerEpoch, single.droppedRows]).toEqual([2, 1]);
  });

  test('restoring a state gives the same future batches', () => {
    const a = new MiniBatcher(numberedSet(20), 6, 5, { keepRemainder: true });
    a.shuffle();
    const saved = a.state();
    const b = new MiniBatcher(numberedSet(20), 6, 99, { keepRemainder: true });
    b.restore(saved);
    a.shuffle();
    b.shuffle();
    for (let i = 0; i < a.batchesPerEpoch; i++) expect(Array.from(b.batch(i).x.data)).toEqual(Array.from(a.batch(i).x.data));
    expect(() => b.restore({ ...saved, order: Int32Array.of(1, 1) })).toThrow(/state.order/);
  });
});

describe('MiniBatcher.prefetch', () => {
  const copy = (b: { x: { data: Float32Array }; labels: Int32Array }) => ({ x: Array.from(b.x.data), labels: Array.from(b.labels) });

  test('a prefetched batch equals the batch gathered on demand (remainder included), and the batch returned before stays intact', () => {
    // Arrange: two batchers on the same data, seed and order.
    const eager = new MiniBatcher(numberedSet(11), 3, 5, { keepRemainder: true });
    const ahead = new MiniBatcher(numberedSet(11), 3, 5, { keepRemainder: true });
    eager.shuffle();
    ahead.shuffle();
    for (let b = 0; b < eager.batchesPerEpoch; b++) {
      // Act
      const current = ahead.batch(b);
      const before = copy(current);
      if (b + 1 < ahead.batchesPerEpoch) ahead.prefetch(b + 1);
      // Assert
      expect(copy(current)).toEqual(before);
      expect(before).toEqual(copy(eager.batch(b)));
    }
  });

  test('a prefetch made before a shuffle, or for another index, is not used', () => {
    const batcher = new MiniBatcher(numberedSet(12), 4, 9);
    const reference = new MiniBatcher(numberedSet(12), 4, 9);
    batcher.shuffle();
    reference.shuffle();
    batcher.prefetch(1);
    batcher.shuffle();
    reference.shuffle();
    expect(copy(batcher.batch(1))).toEqual(copy(reference.batch(1)));
    batcher.prefetch(2);
    expect(copy(batcher.batch(0))).toEqual(copy(reference.batch(0)));
  });
});

describe('MiniBatcher.prefetchInBackground (on a kernel thread)', () => {
  const copy = (b: { x: { data: Float32Array }; labels: Int32Array }) => ({ x: Array.from(b.x.data), labels: Array.from(b.labels) });
  let previous = 'cpu';
  beforeAll(async () => {
    previous = backendInfo()?.name ?? 'cpu';
    await initBackend('wasm');
    configureKernelThreads(2, { minWork: 0, adaptive: false });
  });
  afterAll(async () => {
    configureKernelThreads('auto', { minWork: 1 << 20, adaptive: true });
    await initBackend(previous as 'cpu');
  });

  test('sharedFloat32Array gives a zeroed Float32Array on a SharedArrayBuffer', () => {
    const data = sharedFloat32Array(5);
    expect(data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(data)).toEqual([0, 0, 0, 0, 0]);
  });

  test('dropped shared sets are collected as ordinary ArrayBuffers would be: 20 of 100 MiB, each filled and dropped, add well under 2 GiB', () => {
    // V8 starts no collection for SharedArrayBuffers: without the announcement (cifar.ts
    // sharedBuffer) the 20 stay resident until some other collection, 2 GiB here.
    const before = process.resourceUsage().maxRSS;
    for (let i = 0; i < 20; i++) {
      const data = sharedFloat32Array(25 * 2 ** 20);
      expect(data.buffer).toBeInstanceOf(SharedArrayBuffer);
      data.fill(i + 1);
    }
    const grownMiB = (process.resourceUsage().maxRSS - before) / 1024;
    expect(grownMiB, 'MiB of peak RSS added').toBeLessThan(700);
  });

  test('batches prefetched in the background equal those gathered on demand (remainder included), and the batch returned before stays intact', () => {
    // Arrange: rows of a shared set; the same seed and order for both batchers.
    const eager = new MiniBatcher(numberedSet(23), 4, 5, { keepRemainder: true });
    const ahead = new MiniBatcher(numberedSet(23, true), 4, 5, { keepRemainder: true });
    for (let epoch = 0; epoch < 2; epoch++) {
      eager.shuffle();
      ahead.shuffle();
      for (let b = 0; b < eager.batchesPerEpoch; b++) {
        // Act
        const current = ahead.batch(b);
        const before = copy(current);
        const started = b + 1 < ahead.batchesPerEpoch ? ahead.prefetchInBackground(b + 1) : true;
        // Assert
        expect(started, `epoch ${epoch}, batch ${b + 1}`).toBe(true);
        expect(copy(current)).toEqual(before);
        expect(before, `epoch ${epoch}, batch ${b}`).toEqual(copy(eager.batch(b)));
      }
    }
    ahead.dispose();
  });

  test('one made before a shuffle, a restore, or for another index is not used; dispose finishes one pending', () => {
    const batcher = new MiniBatcher(numberedSet(12, true), 4, 9);
    const reference = new MiniBatcher(numberedSet(12), 4, 9);
    batcher.shuffle();
    reference.shuffle();
    const state = reference.state();
    expect(batcher.prefetchInBackground(1)).toBe(true);
    batcher.shuffle();
    reference.shuffle();
    expect(copy(batcher.batch(1))).toEqual(copy(reference.batch(1)));
    expect(batcher.prefetchInBackground(2)).toBe(true);
    expect(copy(batcher.batch(0))).toEqual(copy(reference.batch(0)));
    expect(batcher.prefetchInBackground(2)).toBe(true);
    batcher.restore(state);
    reference.restore(state);
    expect(copy(batcher.batch(2))).toEqual(copy(reference.batch(2)));
    expect(batcher.prefetchInBackground(1)).toBe(true);
    batcher.dispose();
  });

  test('prefetchDuring runs the step while the next batch is gathered, returns its value, and withdraws the idle task even when the step throws', () => {
    // Arrange
    const shared = new MiniBatcher(numberedSet(12, true), 4, 3);
    const plain = new MiniBatcher(numberedSet(12), 4, 3);
    const reference = new MiniBatcher(numberedSet(12), 4, 3);
    [shared, plain, reference].forEach((b) => b.shuffle());
    let prefetches = 0;
    plain.prefetch = () => { prefetches++; };
    const model = createModel({ inputDim: 2, hiddenDims: [3], classes: 2, batchNorm: false }, { seed: 1 });
    const threadedProduct = () => forward(model, { rows: 4, cols: 2, data: new Float32Array(8) }, 'inference').dispose();

    // Act + Assert: in the background (shared rows), the step's value comes back and batch 1 is the one asked for.
    expect(shared.prefetchDuring(1, () => 42)).toBe(42);
    expect(copy(shared.batch(1))).toEqual(copy(reference.batch(1)));
    // Rows not shared: this thread's idle task during the step's first threaded product.
    plain.prefetchDuring(2, threadedProduct);
    expect(prefetches).toBe(1);
    // A step that throws: the task is withdrawn all the same, so a later product does not run it.
    expect(() => plain.prefetchDuring(3, () => { throw new Error('step failed'); })).toThrow('step failed');
    threadedProduct();
    expect(prefetches).toBe(1);
    expect(plain.prefetchDuring(null, () => 'no prefetch')).toBe('no prefetch');
    disposeModel(model);
    shared.dispose();
  });

  test('false, doing nothing, when no kernel thread can: rows not shared, rows to mirror, or one thread; prefetch still works', () => {
    const plain = new MiniBatcher(numberedSet(12), 4, 3);
    plain.shuffle();
    expect(plain.prefetchInBackground(1)).toBe(false);
    const flip: FlipTransform = { source: new Int32Array([1, 0]), scale: new Float32Array([1, 1]), shift: new Float32Array([0, 0]) };
    const mirrored = new MiniBatcher(numberedSet(12, true), 4, 3, { flip });
    mirrored.shuffle();
    expect(mirrored.prefetchInBackground(1)).toBe(false);
    configureKernelThreads(1);
    const unthreaded = new MiniBatcher(numberedSet(12, true), 4, 3);
    const reference = new MiniBatcher(numberedSet(12), 4, 3);
    unthreaded.shuffle();
    reference.shuffle();
    expect(unthreaded.prefetchInBackground(1)).toBe(false);
    unthreaded.prefetch(1);
    expect(copy(unthreaded.batch(1))).toEqual(copy(reference.batch(1)));
    configureKernelThreads(2, { minWork: 0, adaptive: false });
  });
});

describe('flipTransform', () => {
  test('the flipped standardised row equals the standardised flipped image, exactly in float64 terms', async () => {
    const { computeFeatureStats, standardizeFeatures } = await import('./cifar.js');
    const { flipTransform, flipRow } = await import('./flip.js');
    // Arrange: 5 random images and their mirror images.
    const count = 5;
    const pixels = new Uint8Array(count * 3072);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
    const mirrored = new Uint8Array(pixels.length);
    for (let r = 0; r < count; r++)
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < 32; y++)
          for (let x = 0; x < 32; x++) mirrored[r * 3072 + c * 1024 + y * 32 + x] = pixels[r * 3072 + c * 1024 + y * 32 + (31 - x)];
    const data = { count, pixels, labels: new Uint8Array(count), sources: ['t'] };
    const stats = computeFeatureStats(data);
    const plain = standardizeFeatures(data, stats);
    const expected = standardizeFeatures({ ...data, pixels: mirrored }, stats);
    // Act
    const out = new Float32Array(3072);
    const transform = flipTransform(stats);
    for (let r = 0; r < count; r++) {
      flipRow(transform, plain.data.subarray(r * 3072, (r + 1) * 3072), out);
      // Assert: float32 rounding of two routes to the same value.
      for (let j = 0; j < 3072; j++) expect(Math.abs(out[j] - expected.data[r * 3072 + j])).toBeLessThan(1e-5 * (1 + Math.abs(expected.data[r * 3072 + j])));
    }
    // Flipping twice is the identity.
    const twice = new Float32Array(3072);
    flipRow(transform, out, twice);
    for (let j = 0; j < 3072; j++) expect(twice[j]).toBeCloseTo(plain.data[j + (count - 1) * 3072], 4);
  });
});
