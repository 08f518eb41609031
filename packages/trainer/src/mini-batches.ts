import {
  createBatchBuffer, createPrng, forgetGatherSource, gatherRowsInBackground, nextInt, nextUniform, releaseBatchBuffer, setKernelIdleTask,
  type BackgroundGather, type Float32Matrix, type Prng,
} from '@bnmlp/core';
import { flipRow, type FlipTransform } from './flip.js';
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

export interface MiniBatcherOptions {
  /**
   * Keep the last, smaller batch of an epoch (default false: the remainder is left out, as
   * PyTorch's drop_last does). A remainder of fewer than `minBatchRows` rows is dropped anyway.
   */
  readonly keepRemainder?: boolean;
  /** 2 under batch norm: a batch of one row has variance 0 and normalizes to nothing. Default 1. */
  readonly minBatchRows?: number;
  /** Mirror each row with probability 1/2 (seeded by the batcher's seed, epoch and batch). */
  readonly flip?: FlipTransform | null;
}

/** Everything a batcher's future depends on: restore it and the same batches follow. */
export interface MiniBatcherState {
  readonly order: Int32Array;
  readonly prngState: number;
  /** Shuffles so far (the epoch of the current order; flips are drawn per epoch and batch). */
  readonly shuffles: number;
}

/**
 * Shuffled mini-batches of a labeled set. Each batch's rows are copied into one reused buffer
 * (row copies out of a typed array are cheap; a fresh array per batch would churn the GC, and
 * slicing a large backend tensor copies all of it on the wasm backend).
 */
export class MiniBatcher {
  readonly batchesPerEpoch: number;
  /** Rows of the last batch when it is smaller than batchSize, else batchSize. */
  readonly lastBatchRows: number;
  /** Rows left out of every epoch (a remainder not kept, or one smaller than minBatchRows). */
  readonly droppedRows: number;
  private order: Int32Array;
  private buffer: Float32Array;
  private labelBuffer: Int32Array;
  /** The other pair of buffers, for prefetch (made on its first use: a batcher never prefetched holds one batch). */
  private spare: [Float32Array, Int32Array] | null = null;
  private prefetched: { readonly index: number; readonly shuffles: number } | null = null;
  /** A prefetch a kernel thread is still gathering (prefetchInBackground). */
  private gathering: BackgroundGather | null = null;
  private readonly prng: Prng;
  private readonly flip: FlipTransform | null;
  private shuffles = 0;

  constructor(
    readonly data: LabeledSet,
    readonly batchSize: number,
    readonly seed = 0,
    options: MiniBatcherOptions = {},
  ) {
    const op = 'MiniBatcher';
    const { rows, cols } = data.x;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > rows)
      throw new TrainerArgumentError(op, 'batchSize', `an integer in [1, ${rows}] (rows)`, String(batchSize));
    if (data.labels.length !== rows) throw new TrainerArgumentError(op, 'labels', `length ${rows} (rows)`, `length ${data.labels.length}`);
    const minRows = options.minBatchRows ?? 1;
    if (!Number.isInteger(minRows) || minRows < 1 || minRows > batchSize)
      throw new TrainerArgumentError(op, 'options.minBatchRows', `an integer in [1, ${batchSize}] (batchSize)`, String(minRows));
    if (options.flip && options.flip.source.length !== cols)
      throw new TrainerArgumentError(op, 'options.flip', `a transform of ${cols} features`, `${options.flip.source.length} features`);
    const whole = Math.floor(rows / batchSize);
    const remainder = rows - whole * batchSize;
    const keep = options.keepRemainder === true && remainder >= minRows;
    this.batchesPerEpoch = whole + (keep ? 1 : 0);
    this.lastBatchRows = keep ? remainder : batchSize;
    this.droppedRows = keep ? 0 : remainder;
    this.order = Int32Array.from({ length: rows }, (_, i) => i);
    // In the kernel threads' memory when they run: a train step then reads the rows in place.
    this.buffer = createBatchBuffer(batchSize * cols);
    this.labelBuffer = new Int32Array(batchSize);
    this.prng = createPrng(seed);
    this.flip = options.flip ?? null;
  }

  /** A new random order for the next epoch (Fisher–Yates from the seeded PRNG). */
  shuffle(): void {
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = nextInt(this.prng, i + 1);
      const t = this.order[i];
      this.order[i] = this.order[j];
      this.order[j] = t;
    }
    this.shuffles++;
  }

  /** Shuffles so far: the number of epochs whose order has been drawn. */
  get shuffleCount(): number {
    return this.shuffles;
  }

  /** Rows in batch `index`. */
  rowsIn(index: number): number {
    return index === this.batchesPerEpoch - 1 ? this.lastBatchRows : this.batchSize;
  }

  /**
   * Batch `index` (0-based) of the current order: gathered now, or taken from prefetch(index) when
   * that ran since the last shuffle.
   */
  batch(index: number): MiniBatch {
    let buffers: [Float32Array, Int32Array];
    this.finishGathering();
    if (this.prefetched && this.prefetched.index === index && this.prefetched.shuffles === this.shuffles) {
      // The prefetched rows become the current batch; the buffers just returned become the spare ones.
      buffers = this.spare!;
      this.spare = [this.buffer, this.labelBuffer];
    } else {
      buffers = [this.buffer, this.labelBuffer];
      this.fill(index, ...buffers);
    }
    this.prefetched = null;
    [this.buffer, this.labelBuffer] = buffers;
    const rows = this.rowsIn(index);
    const cols = this.data.x.cols;
    return {
      x: { rows, cols, data: rows === this.batchSize ? this.buffer : this.buffer.subarray(0, rows * cols) },
      labels: rows === this.batchSize ? this.labelBuffer : this.labelBuffer.subarray(0, rows),
    };
  }

  /**
   * Gathers batch `index` into spare buffers ahead of time (the trainer does it while the kernel
   * threads finish a step); the next batch(index) then returns it without gathering. The batch
   * returned last stays valid: the spare buffers are the ones before it.
   */
  prefetch(index: number): void {
    this.fill(index, ...this.freeSpare());
    this.prefetched = { index, shuffles: this.shuffles };
  }

  /**
   * prefetch(index) on a kernel thread (@bnmlp/core gatherRowsInBackground): it gathers the rows
   * while it has no part of a train step's products to compute, and the next batch(index) takes
   * what is left. The batch is the same as prefetch's. Returns false, having done nothing, when no
   * kernel thread can: threads off, the set's rows not on a SharedArrayBuffer (see
   * sharedFloat32Array), or rows to mirror (flip); prefetch on this thread then.
   */
  prefetchInBackground(index: number): boolean {
    if (this.flip) return false;
    const [buffer, labelBuffer] = this.freeSpare();
    const start = index * this.batchSize;
    const rows = this.rowsIn(index);
    const gather = gatherRowsInBackground(this.data.x.data, this.data.x.cols, this.order.subarray(start, start + rows), buffer);
    if (!gather) return false;
    for (let r = 0; r < rows; r++) labelBuffer[r] = this.data.labels[this.order[start + r]];
    this.gathering = gather;
    this.prefetched = { index, shuffles: this.shuffles };
    return true;
  }

  /**
   * Runs `step` (a train step) while batch `index` is prefetched (null: none): on a kernel thread
   * (prefetchInBackground), else on this thread while the kernel threads finish their part of the
   * step's first product (@bnmlp/core setKernelIdleTask; a prefetch that never ran there is
   * simply not used). Returns what `step` returns.
   */
  prefetchDuring<T>(index: number | null, step: () => T): T {
    if (index !== null && !this.prefetchInBackground(index)) setKernelIdleTask(() => this.prefetch(index));
    try {
      return step();
    } finally {
      setKernelIdleTask(null);
    }
  }

  /** The spare buffers, made on first use, with no gather still writing into them. */
  private freeSpare(): [Float32Array, Int32Array] {
    this.finishGathering();
    return (this.spare ??= [createBatchBuffer(this.buffer.length), new Int32Array(this.labelBuffer.length)]);
  }

  private finishGathering(): void {
    this.gathering?.finish();
    this.gathering = null;
  }

  private fill(index: number, buffer: Float32Array, labelBuffer: Int32Array): void {
    const { x, labels } = this.data;
    const cols = x.cols;
    const start = index * this.batchSize;
    const rows = this.rowsIn(index);
    // Flips come from their own stream keyed by (seed, epoch, batch), so a run resumed mid-epoch draws the same ones.
    const flips = this.flip ? createPrng((this.seed * 0x9e3779b1 + this.shuffles * 0x85ebca6b + index * 0xc2b2ae35) >>> 0) : null;
    for (let r = 0; r < rows; r++) {
      const row = this.order[start + r];
      const source = x.data.subarray(row * cols, (row + 1) * cols);
      const target = buffer.subarray(r * cols, (r + 1) * cols);
      if (flips && nextUniform(flips) < 0.5) flipRow(this.flip!, source, target);
      else target.set(source);
      labelBuffer[r] = labels[row];
    }
  }

  /** Gives the batch buffers back to the kernel threads' memory (see createBatchBuffer); no batch may be used after. */
  dispose(): void {
    this.finishGathering();
    forgetGatherSource(this.data.x.data);
    releaseBatchBuffer(this.buffer);
    if (this.spare) releaseBatchBuffer(this.spare[0]);
    this.spare = null;
    this.prefetched = null;
  }

  state(): MiniBatcherState {
    return { order: this.order.slice(), prngState: this.prng.state, shuffles: this.shuffles };
  }

  restore(state: MiniBatcherState): void {
    const op = 'MiniBatcher.restore';
    if (!(state.order instanceof Int32Array) || state.order.length !== this.order.length)
      throw new TrainerArgumentError(op, 'state.order', `an Int32Array of ${this.order.length} rows`, String(state.order?.length));
    const seen = new Uint8Array(this.order.length);
    for (const row of state.order) {
      if (!(row >= 0 && row < seen.length) || seen[row]) throw new TrainerArgumentError(op, 'state.order', 'a permutation of the rows', `repeated or out-of-range row ${row}`);
      seen[row] = 1;
    }
    // A batch prefetched from the order before this one must not be taken for one of the new order.
    this.finishGathering();
    this.prefetched = null;
    this.order = state.order.slice();
    this.prng.state = state.prngState >>> 0;
    this.shuffles = state.shuffles;
  }
}
