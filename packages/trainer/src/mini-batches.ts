import { createPrng, nextInt, type Float32Matrix, type Prng } from '@bnmlp/core';
import { TrainerArgumentError } from './errors.js';

/** Samples as rows of one float32 matrix, with a label per row. */
export interface LabeledSet {
  readonly x: Float32Matrix;
  readonly labels: Uint8Array | Int32Array;
}

export interface MiniBatch {
  /** A view of the batcher's reused buffer: valid until the next call to batch(). */
  readonly x: Float32Matrix;
  readonly labels: Int32Array;
}

/**
 * Shuffled mini-batches of a labeled set. Each batch's rows are copied into one reused buffer
 * (row copies out of a typed array are cheap; a fresh array per batch would churn the GC, and
 * slicing a large backend tensor copies all of it on the wasm backend). An epoch holds
 * floor(rows / batchSize) batches: the remainder is left out, as PyTorch's drop_last does.
 */
export class MiniBatcher {
  readonly batchesPerEpoch: number;
  private readonly order: Int32Array;
  private readonly buffer: Float32Array;
  private readonly labelBuffer: Int32Array;
  private readonly prng: Prng;

  constructor(
    readonly data: LabeledSet,
    readonly batchSize: number,
    seed = 0,
  ) {
    const op = 'MiniBatcher';
    const { rows, cols } = data.x;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > rows)
      throw new TrainerArgumentError(op, 'batchSize', `an integer in [1, ${rows}] (rows)`, String(batchSize));
    if (data.labels.length !== rows) throw new TrainerArgumentError(op, 'labels', `length ${rows} (rows)`, `length ${data.labels.length}`);
    this.batchesPerEpoch = Math.floor(rows / batchSize);
    this.order = Int32Array.from({ length: rows }, (_, i) => i);
    this.buffer = new Float32Array(batchSize * cols);
    this.labelBuffer = new Int32Array(batchSize);
    this.prng = createPrng(seed);
  }

  /** A new random order for the next epoch (Fisher–Yates from the seeded PRNG). */
  shuffle(): void {
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = nextInt(this.prng, i + 1);
      const t = this.order[i];
      this.order[i] = this.order[j];
      this.order[j] = t;
    }
  }

  /** Batch `index` (0-based) of the current order. */
  batch(index: number): MiniBatch {
    const { x, labels } = this.data;
    const cols = x.cols;
    const start = index * this.batchSize;
    for (let r = 0; r < this.batchSize; r++) {
      const row = this.order[start + r];
      this.buffer.set(x.data.subarray(row * cols, (row + 1) * cols), r * cols);
      this.labelBuffer[r] = labels[row];
    }
    return { x: { rows: this.batchSize, cols, data: this.buffer }, labels: this.labelBuffer };
  }
}
