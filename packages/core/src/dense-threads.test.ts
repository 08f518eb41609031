import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';
import { callerShare, DenseThreads, DenseThreadsError, movingAverage, shareBesideIdleTask, splitRows } from './dense-threads.js';
import { CoreArgumentError } from './errors.js';
import { createModel, disposeModel, modelValues, type CoreModel } from './model.js';
import { backwardTrace, forwardTrace } from './network.js';
import { createPrng, nextNormal } from './prng.js';
import { createMomentumState, disposeMomentumState, trainStep, type MomentumState } from './train-step.js';
import {
  allowRelaxedSimd, configureKernelThreads, configureWasmKernels, createBatchBuffer, kernelThreadStats, denseMomentumStep, releaseBatchBuffer, denseScores,
  denseWeightGradient, forgetGatherSource, gatherRowsInBackground, RESTART_FOR_SOURCE_BYTES, setKernelIdleTask, shutdownKernelThreads, threadedProductCount, wasmKernelStatus,
  type WasmKernelVariant,
} from './wasm-kernels.js';

// The threaded dense products (dense-threads.ts): a split across threads must give the bits of
// the unthreaded kernels (so results never depend on the thread count), each thread must write
// only its own rows, and whole training runs must be bit-identical with 1 and 2 threads. The
// equivalence, train-step and robustness suites also run on the threads ('wasm+2-threads') and
// compare them with @bnmlp/reference.

const variants: WasmKernelVariant[] = allowRelaxedSimd() ? ['relaxed-simd', 'simd128'] : ['simd128'];
const WORKER_URL = new URL('../worker/dense-worker.mjs', import.meta.url);
// The project's lib settings carry no wasm types.
const WasmModuleClass = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => object } }).WebAssembly.Module;
// The build wasm-kernels.ts loads: BNMLP_WASM_KERNELS_DIR (the planted kernel bugs of scripts/kernel-mutants.mjs) or wasm/.
const sharedModule = (variant: WasmKernelVariant) => {
  const dir = process.env.BNMLP_WASM_KERNELS_DIR;
  const file = `kernels-${variant}-shared.wasm`;
  return new WasmModuleClass(readFileSync(dir ? join(dir, file) : new URL(`../wasm/${file}`, import.meta.url)));
};

const shapes = () =>
  fc.record({
    m: fc.integer({ min: 1, max: 70 }),
    // k past 256 and n past 64: x·W's passes over k and its second group of panels (assembly/dense.ts).
    k: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 16, max: 300 })),
    n: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 8, max: 70 })),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  });

function normals(seed: number, size: number): Float32Array {
  const prng = createPrng(seed);
  return Float32Array.from({ length: size }, () => nextNormal(prng));
}

const bits = (values: Float32Array) => Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length));

/**
 * Trains a new model of `config` (seeded) with `steps`, then returns every array the run left: each
 * layer's parameters and running averages, then every momentum buffer. Model and momentum are freed.
 */
function trainFresh(
  config: Parameters<typeof createModel>[0], seed: number, steps: (model: CoreModel, state: MomentumState) => void,
): Float32Array[] {
  const model = createModel(config, { seed });
  const state = createMomentumState(model);
  try {
    steps(model, state);
    const values = modelValues(model).flatMap((layer) => [layer.W, layer.b, layer.gamma!, layer.beta!, layer.runningMean!, layer.runningVar!].filter(Boolean));
    for (const v of state.velocity.values()) values.push(v.dataSync() as Float32Array);
    return values;
  } finally {
    disposeMomentumState(state);
    disposeModel(model);
  }
}

/** The suite runs on the wasm backend with the fastest kernel build, and leaves one thread (the default threshold) behind. */
function onWasmKernelsThenOneThread(): void {
  beforeAll(async () => {
    await initBackend('wasm');
    configureWasmKernels('auto');
  });
  afterAll(() => {
    configureKernelThreads(1, { minWork: 1 << 20 });
  });
}

describe('splitRows', () => {
  test('parts cover [0, rows) in order, without overlap, starting at multiples of the alignment', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 8 }), fc.constantFrom(1, 4, 16), fc.double({ min: 0, max: 1, noNaN: true }), (rows, parts, align, share) => {
        const split = splitRows(rows, parts, align, parts === 1 ? 1 : share);
        expect(split).toHaveLength(parts);
        expect(split[0][0]).toBe(0);
        expect(split[parts - 1][1]).toBe(rows);
        split.forEach(([begin, end], t) => {
          expect(end).toBeGreaterThanOrEqual(begin);
          if (t > 0) expect(begin).toBe(split[t - 1][1]);
          if (begin < rows) expect(begin % align).toBe(0);
        });
      }),
    );
  });

  test('two threads share 100 rows (align 4) and 3072 rows (align 16) about evenly', () => {
    expect(splitRows(100, 2, 4)).toEqual([[0, 52], [52, 100]]);
    expect(splitRows(3072, 2, 16)).toEqual([[0, 1536], [1536, 3072]]);
  });

  test("the caller takes fewer of x·W's rows when it copies them in (0.44 at n = 50), half otherwise", () => {
    expect(callerShare(50, 2, true)).toBeCloseTo(0.4375, 4);
    expect(splitRows(100, 2, 4, callerShare(50, 2, true))).toEqual([[0, 44], [44, 100]]);
    expect(callerShare(50, 2, false)).toBe(0.5);
    expect(callerShare(5000, 2, true)).toBeGreaterThan(0.49);
    expect(callerShare(50, 1, true)).toBe(1);
  });
});

describe('shareBesideIdleTask', () => {
  test("an idle task's time comes off the caller's rows, so that every thread finishes together", () => {
    // 100 rows at 0.0166 ms each, a 0.49 ms task (the trainer's gather): 35 rows for the caller, 65 for the other thread.
    const share = shareBesideIdleTask(0.5, 2, 100, 0.49, 0.0166);
    expect(share * 100 * 0.0166 + 0.49).toBeCloseTo((1 - share) * 100 * 0.0166, 10);
    expect(share).toBeCloseTo(0.3524, 4);
    // Three threads: the two others share the rest.
    const three = shareBesideIdleTask(1 / 3, 3, 90, 0.3, 0.01);
    expect(three * 90 * 0.01 + 0.3).toBeCloseTo(((1 - three) * 90 * 0.01) / 2, 10);
  });

  test('the times it is given are moving averages: the first sample, then 3/4 of the average and 1/4 of each new sample', () => {
    expect(movingAverage(undefined, 4)).toBe(4);
    expect(movingAverage(4, 8)).toBe(5);
    expect(movingAverage(5, 1)).toBe(4);
  });

  test('never below 0; unchanged with one thread, no task, no measured row time or no rows', () => {
    expect(shareBesideIdleTask(0.5, 2, 100, 50, 0.01)).toBe(0);
    expect(shareBesideIdleTask(1, 1, 100, 0.5, 0.01)).toBe(1);
    expect(shareBesideIdleTask(0.44, 2, 100, 0, 0.01)).toBe(0.44);
    expect(shareBesideIdleTask(0.44, 2, 100, 0.5, 0)).toBe(0.44);
    expect(shareBesideIdleTask(0.44, 2, 0, 0.5, 0.01)).toBe(0.44);
  });
});

describe.each(variants)('threaded dense products, %s build', (variant) => {
  beforeAll(async () => {
    await initBackend('wasm');
    configureWasmKernels(variant);
  });
  afterAll(() => {
    configureKernelThreads(1, { minWork: 1 << 20 });
    configureWasmKernels('auto');
  });

  /** x·W + b, the gradient xᵀg + 2λW and the fused momentum step, as plain arrays. */
  function products(p: { m: number; k: number; n: number; seed: number }) {
    const { m, k, n, seed } = p;
    return tf.tidy(() => {
      const x = tf.tensor2d(normals(seed, m * k), [m, k]);
      const w = tf.tensor2d(normals(seed + 1, k * n), [k, n]);
      const b = tf.tensor1d(normals(seed + 2, n));
      const g = tf.tensor2d(normals(seed + 3, m * n), [m, n]);
      const v = tf.tensor2d(normals(seed + 4, k * n), [k, n]);
      const step = denseMomentumStep(x, g, w, v, { lambda: 0.01, learningRate: 0.1, momentum: 0.9 });
      return [denseScores(x, w, b), denseWeightGradient(x, g, w, 0.01), step.w, step.v].map((t) => t.dataSync() as Float32Array);
    });
  }

  test('2 and 3 threads give the bits of the unthreaded kernels on every shape path', () => {
    fc.assert(
      fc.property(shapes(), (p) => {
        // Arrange
        configureKernelThreads(1);
        const unthreaded = products(p);
        for (const threads of [2, 3]) {
          // Act
          expect(configureKernelThreads(threads, { minWork: 0, adaptive: false })).toMatchObject({ variant, threads, threadsReason: null });
          const before = threadedProductCount();
          const threaded = products(p);
          // Assert
          expect(threadedProductCount() - before).toBe(3); // x·W + b, the gradient, the momentum step
          threaded.forEach((values, i) => expect(bits(values), `product ${i}, ${threads} threads, ${JSON.stringify(p)}`).toEqual(bits(unthreaded[i])));
        }
      }),
      { numRuns: 25 },
    );
  });

  test.each([[37, 70, 19], [13, 40, 5]])('each thread writes only its own rows of the output (m %i, k %i, n %i)', (m, k, n) => {
    // Arrange: a heap standing in for tfjs's, with the operands and canary-filled outputs.
    const pool = new DenseThreads(sharedModule(variant), 2, WORKER_URL);
    const layout = { x: 0, w: m * k, b: m * k + k * n, out: m * k + k * n + n, g: 0, v: 0, outW: 0, outV: 0 };
    layout.g = layout.out + m * n;
    layout.v = layout.g + m * n;
    layout.outW = layout.v + k * n;
    layout.outV = layout.outW + k * n;
    const heap = new Float32Array(layout.outV + k * n + 64);
    heap.set(normals(1, layout.outW));
    const canary = heap.slice();
    const ref = (name: keyof typeof layout) => ({ dataId: {}, offset: layout[name] * 4 });
    const forward = () => pool.forward(heap.buffer, ref('x'), ref('w'), ref('b'), layout.out * 4, m, k, n);
    const step = () => pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), ref('v'), ref('outW'), ref('outV'), m, k, n, 0.02, 0.1, 0.9);
    try {
      forward();
      step();
      const full = heap.slice();
      const rowParts = { forward: splitRows(m, 2, 4, callerShare(n, 2, true)), step: splitRows(k, 2, 16) };
      for (const t of [0, 1]) {
        // Act
        heap.set(canary);
        pool.probePart = t;
        forward();
        step();
        // Assert: the part's rows as in the full run, every other output entry untouched by this thread (NaN), inputs unchanged.
        const rowOf = (index: number, base: number, width: number) => Math.floor((index - base) / width);
        for (let i = 0; i < heap.length; i++) {
          const inOut = i >= layout.out && i < layout.out + m * n;
          const inW = i >= layout.outW && i < layout.outW + 2 * k * n;
          let expected: number;
          if (inOut) {
            const [begin, end] = rowParts.forward[t];
            const row = rowOf(i, layout.out, n);
            expected = row >= begin && row < end ? full[i] : NaN;
          } else if (inW) {
            const [begin, end] = rowParts.step[t];
            const row = rowOf(i, i < layout.outV ? layout.outW : layout.outV, n);
            expected = row >= begin && row < end ? full[i] : NaN;
          } else expected = canary[i];
          if (!Object.is(heap[i], expected)) throw new Error(`thread ${t}: heap entry ${i} is ${heap[i]}, expected ${expected}`);
        }
      }
    } finally {
      pool.shutdown();
    }
  });
});

describe('training with 1 and 2 kernel threads', () => {
  onWasmKernelsThenOneThread();

  function train(threads: number): { losses: number[]; values: Float32Array[] } {
    configureKernelThreads(threads, { minWork: 0, adaptive: false });
    const losses: number[] = [];
    const values = trainFresh({ inputDim: 96, hiddenDims: [24, 12], classes: 10, batchNorm: true }, 3, (model, state) => {
      for (let step = 0; step < 30; step++) {
        const x = { rows: 20, cols: 96, data: normals(100 + step, 20 * 96) };
        const labels = Array.from({ length: 20 }, (_, i) => (i * 7 + step) % 10);
        // η changes every step, as under a schedule.
        losses.push(trainStep(model, state, x, labels, { lambda: 0.005, learningRate: 0.05 / (1 + step), momentum: 0.9 }, { returnLoss: true }).loss!);
      }
    });
    return { losses, values };
  }

  test('the same seed gives a bit-identical history, parameters, momentum and running averages', () => {
    // Arrange / Act
    const one = train(1);
    const before = threadedProductCount();
    const two = train(2);
    // Assert
    expect(threadedProductCount() - before).toBeGreaterThanOrEqual(30 * 3 * 2);
    expect(two.losses).toEqual(one.losses);
    two.values.forEach((values, i) => expect(bits(values), `array ${i}`).toEqual(bits(one.values[i])));
  });
});

describe("deferred copies of the weight step's outputs (Note [Deferred copies of the weight step's outputs], wasm-kernels.ts)", () => {
  onWasmKernelsThenOneThread();

  // Only layer 1 (64 × 512 × 16 multiply-adds) is above minWork: one W and one velocity wait per step.
  const config = { inputDim: 512, hiddenDims: [16], classes: 10, batchNorm: true };
  const labels = Array.from({ length: 64 }, (_, i) => i % 10);
  const settings = { lambda: 0.01, learningRate: 0.05, momentum: 0.9 };
  const steps = (model: CoreModel, state: MomentumState) => {
    for (let step = 0; step < 5; step++) trainStep(model, state, { rows: 64, cols: 512, data: normals(400 + step, 64 * 512) }, labels, settings);
  };
  const firstVelocity = (state: MomentumState) => [...state.velocity.values()][0];
  const unthreaded = () => {
    configureKernelThreads(1, { minWork: 1 << 20 });
    return trainFresh(config, 7, steps);
  };
  const onTwoThreads = () => configureKernelThreads(2, { minWork: 100_000, adaptive: false });

  test('training steps copy no W or velocity into the tfjs heap; a tfjs op, dataSync and the next reads see the bits of 1 thread', () => {
    // Arrange
    const expected = unthreaded();
    onTwoThreads();
    let during = -1;
    let waitingAfterSteps = -1;
    let copiedByReads = -1;
    let viaOp: Float32Array | null = null;

    // Act
    const values = trainFresh(config, 7, (model, state) => {
      const before = kernelThreadStats().deferredCopied;
      steps(model, state);
      during = kernelThreadStats().deferredCopied - before;
      waitingAfterSteps = kernelThreadStats().deferredWaiting;
      viaOp = tf.tidy(() => tf.mul(model.layers[0].W, 1).dataSync() as Float32Array); // a tfjs kernel reads W first
      firstVelocity(state).dataSync();
      copiedByReads = kernelThreadStats().deferredCopied - before;
    });

    // Assert: layer 1's W and velocity waited, were copied once each when read, and hold the 1-thread bits.
    expect(during).toBe(0);
    expect(waitingAfterSteps).toBe(2);
    expect(copiedByReads).toBe(2);
    expect(bits(viaOp!)).toEqual(bits(expected[0]));
    values.forEach((v, i) => expect(bits(v), `array ${i}`).toEqual(bits(expected[i])));
  });

  test('freed unread, they are dropped without a copy', () => {
    // Arrange
    onTwoThreads();
    const before = kernelThreadStats().deferredCopied;
    const model = createModel(config, { seed: 7 });
    const state = createMomentumState(model);
    steps(model, state);
    const waiting = kernelThreadStats().deferredWaiting;

    // Act
    disposeMomentumState(state);
    disposeModel(model);

    // Assert
    expect(waiting).toBe(2);
    expect(kernelThreadStats()).toMatchObject({ deferredWaiting: 0, deferredCopied: before });
  });

  test('shutdownKernelThreads copies them into their tensors first', () => {
    // Arrange
    const expected = unthreaded();
    onTwoThreads();

    // Act
    const values = trainFresh(config, 7, (model, state) => {
      steps(model, state);
      shutdownKernelThreads();
    });

    // Assert
    values.forEach((v, i) => expect(bits(v), `array ${i}`).toEqual(bits(expected[i])));
  });

  test('with more threaded layers than kept copies, a kept copy is copied out before its memory is reused', () => {
    // Arrange: 3 threaded layers hold 12 W and velocity copies in a step, past the 8 the pool keeps.
    const wide = { inputDim: 96, hiddenDims: [24, 12], classes: 10, batchNorm: true };
    const run = () => trainFresh(wide, 3, (model, state) => {
      for (let step = 0; step < 4; step++) trainStep(model, state, { rows: 20, cols: 96, data: normals(500 + step, 20 * 96) }, labels.slice(0, 20), settings);
    });
    configureKernelThreads(1, { minWork: 1 << 20 });
    const expected = run();
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const before = kernelThreadStats().deferredCopied;

    // Act
    const values = run();

    // Assert
    expect(kernelThreadStats().deferredCopied - before).toBeGreaterThan(6); // evictions during the steps, beyond the reads at the end
    values.forEach((v, i) => expect(bits(v), `array ${i}`).toEqual(bits(expected[i])));
  });
});

describe("a train step's batch given as rows (Float32Matrix) on the threads", () => {
  onWasmKernelsThenOneThread();

  // Layer 1 is wide in its input and narrow in its output, so a tensor of the batch (64 × 512 floats,
  // 128 KiB) would outweigh every other tensor of the step.
  const config = { inputDim: 512, hiddenDims: [4], classes: 10, batchNorm: true };
  const batch = (step: number) => ({ rows: 64, cols: 512, data: normals(300 + step, 64 * 512) });
  const labels = Array.from({ length: 64 }, (_, i) => i % 10);
  const settings = { lambda: 0.01, learningRate: 0.05, momentum: 0.9 };

  /** Trains 5 steps; `batchWrites`: how many tensors of the batch's size the steps wrote into the tfjs heap. */
  function train(asTensor: boolean): { values: Float32Array[]; batchWrites: number } {
    const backend = tf.backend() as unknown as { write(values: ArrayLike<number> | null, ...rest: unknown[]): unknown };
    const write = backend.write;
    let batchWrites = 0;
    const values = trainFresh(config, 5, (model, state) => {
      for (let step = 0; step < 5; step++) {
        const x = batch(step);
        const input = asTensor ? tf.tensor2d(x.data, [x.rows, x.cols]) : x;
        backend.write = function (values, ...rest) {
          if (values?.length === 64 * 512) batchWrites++;
          return write.call(this, values, ...rest);
        };
        try {
          trainStep(model, state, input, labels, settings);
        } finally {
          backend.write = write;
        }
        if (input instanceof tf.Tensor) input.dispose();
      }
    });
    return { values, batchWrites };
  }

  test('never becomes a tensor, and gives the bits of the same batch given as a tensor', () => {
    // Arrange: the control, one thread: there each step makes a tensor of the rows, and the count sees it.
    configureKernelThreads(1, { minWork: 1 << 20 });
    const unthreaded = train(false);
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const before = threadedProductCount();

    // Act
    const asRows = train(false);
    const asTensor = train(true);

    // Assert: both threaded; the rows never went into the tfjs heap.
    expect(threadedProductCount() - before).toBeGreaterThanOrEqual(2 * 5 * 2);
    expect(unthreaded.batchWrites).toBe(5);
    expect(asRows.batchWrites).toBe(0);
    asRows.values.forEach((values, i) => expect(bits(values), `array ${i}`).toEqual(bits(asTensor.values[i])));
    asRows.values.forEach((values, i) => expect(bits(values), `array ${i}, 1 thread`).toEqual(bits(unthreaded.values[i])));
  });

  test('createBatchBuffer: in the threads\' memory on 2 threads (a step reads the rows in place), a plain array on 1; the same bits either way', () => {
    // Arrange
    const trainOn = (data: Float32Array) =>
      trainFresh(config, 7, (model, state) => {
        for (let step = 0; step < 3; step++) {
          data.set(batch(step).data);
          trainStep(model, state, { rows: 64, cols: 512, data }, labels, settings);
        }
      });
    configureKernelThreads(1, { minWork: 1 << 20 });
    const plain = createBatchBuffer(64 * 512);
    const unthreaded = trainOn(plain);
    configureKernelThreads(2, { minWork: 0, adaptive: false });

    // Act
    const shared = createBatchBuffer(64 * 512);
    const before = threadedProductCount();
    const threaded = trainOn(shared);

    // Assert
    expect(plain.buffer).toBeInstanceOf(ArrayBuffer);
    expect(shared.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(shared).toHaveLength(64 * 512);
    expect(threadedProductCount() - before).toBeGreaterThanOrEqual(3 * 2);
    threaded.forEach((values, i) => expect(bits(values), `array ${i}`).toEqual(bits(unthreaded[i])));
    releaseBatchBuffer(shared);
    releaseBatchBuffer(plain); // not the threads': ignored
    expect(() => createBatchBuffer(-1)).toThrow(CoreArgumentError);
  });

  test('when the weight step cannot run on the threads, it falls back to a tensor of the rows with the same bits', () => {
    // Arrange: one thread, so threadedMomentumStepOfRows declines; the trace's input is a placeholder.
    configureKernelThreads(1, { minWork: 1 << 20 });
    const model = createModel(config, { seed: 6 });
    const x = batch(0);
    const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), 10) as tf.Tensor2D;
    const velocity = model.layers.map((layer) => tf.zerosLike(layer.W) as tf.Tensor2D);
    const steps = { ...settings, velocity };
    const bitsOfStep = (result: ReturnType<typeof backwardTrace>) => result.weightSteps!.flatMap((step) => [bits(step.w.dataSync() as Float32Array), bits(step.v.dataSync() as Float32Array)]);

    // Act
    const [fromRows, fromTensor] = tf.tidy(() => {
      const input = tf.tensor2d(x.data, [x.rows, x.cols]);
      const placeholderTrace = forwardTrace(model, tf.zeros([0, 512]) as tf.Tensor2D, 'train', denseScores(input, model.layers[0].W, model.layers[0].b));
      const trace = forwardTrace(model, input, 'train');
      return [
        bitsOfStep(backwardTrace(model, placeholderTrace, oneHot, settings.lambda, 'train', false, { ...steps, firstLayerRows: { rows: x.data, tag: {} } })),
        bitsOfStep(backwardTrace(model, trace, oneHot, settings.lambda, 'train', false, steps)),
      ];
    });

    // Assert
    expect(fromRows).toEqual(fromTensor);
    [oneHot, ...velocity].forEach((t) => t.dispose());
    disposeModel(model);
  });
});

describe('backing off when the threads lose (a machine busier than its cores)', () => {
  test('after 4 products in a row whose wait outlasted the own part, the next 100 run unthreaded, twice as many each time the threads lose again, 100 again after 16 good ones', () => {
    const pool = new DenseThreads(sharedModule('simd128'), 1, WORKER_URL);
    const judge = (own: number, wait: number) => (pool as unknown as { judge(o: number, w: number): void }).judge(own, wait);
    const loseFourTimes = () => { for (let i = 0; i < 4; i++) judge(0.5, 0.8); };
    const unthreadedRun = () => { let unthreaded = 0; while (pool.shouldBackOff()) unthreaded++; return unthreaded; };
    for (let i = 0; i < 3; i++) judge(0.5, 0.8);
    judge(0.5, 0.1); // a good product in between resets the count
    for (let i = 0; i < 3; i++) judge(0.5, 0.8);
    expect(pool.shouldBackOff()).toBe(false);
    judge(0.5, 0.8);
    expect(pool.backOffs).toBe(1);
    expect(unthreadedRun()).toBe(100);
    const lengths: number[] = [];
    for (let i = 0; i < 7; i++) {
      loseFourTimes();
      lengths.push(unthreadedRun());
    }
    expect(lengths).toEqual([200, 400, 800, 1600, 3200, 3200, 3200]);
    for (let i = 0; i < 15; i++) judge(0.5, 0.1);
    loseFourTimes();
    expect(unthreadedRun()).toBe(3200); // 15 good products are not enough
    for (let i = 0; i < 15; i++) judge(0.5, 0.04); // short waits never count as slow, whatever the ratio
    judge(0.01, 0.04); // the 16th
    expect(pool.shouldBackOff()).toBe(false);
    loseFourTimes();
    expect(unthreadedRun()).toBe(100);
    pool.shutdown();
  });
});

describe('gathering rows on a kernel thread (gatherRowsInBackground)', () => {
  onWasmKernelsThenOneThread();

  const cols = 257;
  /** `rows` rows of normals on a SharedArrayBuffer, as the trainer's standardised sets. */
  const sharedRows = (rows: number, seed: number) => {
    const data = new Float32Array(new SharedArrayBuffer(rows * cols * 4));
    data.set(normals(seed, rows * cols));
    return data;
  };
  const indicesOf = (count: number, rows: number, seed: number) => {
    const prng = createPrng(seed);
    // Repeats allowed, and the last row always in (the end of the source).
    return Int32Array.from({ length: count }, (_, r) => (r === 0 ? rows - 1 : Math.floor(nextNormal(prng) ** 2 * rows) % rows));
  };
  /** The rows copied here, as the trainer's fill does. */
  const expected = (source: Float32Array, indices: Int32Array) => {
    const out = new Float32Array(indices.length * cols);
    indices.forEach((row, r) => out.set(source.subarray(row * cols, (row + 1) * cols), r * cols));
    return out;
  };
  const target = (rows: number) => createBatchBuffer(rows * cols).fill(NaN);
  const product = () => tf.tidy(() => denseScores(tf.tensor2d(normals(5, 64 * 96), [64, 96]), tf.tensor2d(normals(6, 96 * 40), [96, 40]), tf.zeros([40])).dataSync() as Float32Array);
  /** Blocks this thread (not the kernel threads) for `ms`. */
  const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  /** Blocks this thread until the kernel thread has claimed every row of the pending gather (at most 10 s: a busy machine may not run it at once). */
  const untilClaimed = () => {
    const deadline = performance.now() + 10_000;
    while (kernelThreadStats().gatherRowsLeft > 0 && performance.now() < deadline) sleep(5);
  };

  test('the thread copies the rows around the products it takes part in, which keep their bits; finish() then has nothing left', () => {
    // Arrange
    configureKernelThreads(1, { minWork: 1 << 20 });
    const unthreaded = product();
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const source = sharedRows(300, 1);
    const indices = indicesOf(90, 300, 2);
    const into = target(90);
    const before = kernelThreadStats().gatheredByThreads;

    // Act: products while the gather runs (each stops it and resumes it), then time for the rest.
    const gather = gatherRowsInBackground(source.subarray(0), cols, indices, into);
    const during = [product(), product()];
    untilClaimed();
    gather!.finish();
    gather!.finish(); // again: nothing

    // Assert
    expect(gather).not.toBeNull();
    during.forEach((values) => expect(bits(values)).toEqual(bits(unthreaded)));
    expect(kernelThreadStats().gatheredByThreads - before).toBe(90);
    expect(bits(into.subarray(0, 90 * cols))).toEqual(bits(expected(source, indices)));
  });

  test('finish() at once: this thread takes the rows the kernel thread has not, and the result is the same', () => {
    // Arrange: rows of 3072 floats, as CIFAR's, so that the two threads overlap.
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const source = new Float32Array(new SharedArrayBuffer(400 * 3072 * 4));
    for (let i = 0; i < source.length; i++) source[i] = i;
    const into = createBatchBuffer(200 * 3072);
    for (let trial = 0; trial < 5; trial++) {
      const indices = Int32Array.from({ length: 200 }, (_, r) => (r * 37 + trial) % 400);
      into.fill(NaN);
      const before = kernelThreadStats().gatheredByThreads;

      // Act
      gatherRowsInBackground(source, 3072, indices, into)!.finish();

      // Assert: row r holds source row indices[r] (its first float is its index · 3072), every float of it.
      const wrong = indices.findIndex((row, r) => into.subarray(r * 3072, (r + 1) * 3072).some((value, c) => value !== row * 3072 + c));
      expect(wrong, `trial ${trial}: first wrong row`).toBe(-1);
      expect(kernelThreadStats().gatheredByThreads - before).toBeLessThanOrEqual(200);
    }
    releaseBatchBuffer(into);
  });

  test('a source that is a view into its buffer is read from its own first float', () => {
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const whole = sharedRows(50, 3);
    const source = whole.subarray(7 * cols, 47 * cols); // 40 rows from row 7
    const indices = indicesOf(30, 40, 4);
    const into = target(30);
    const before = kernelThreadStats().gatheredByThreads;
    const gather = gatherRowsInBackground(source, cols, indices, into)!;
    untilClaimed(); // the kernel thread copies every row
    gather.finish();
    expect(kernelThreadStats().gatheredByThreads - before).toBe(30);
    expect(bits(into.subarray(0, 30 * cols))).toEqual(bits(expected(source, indices)));
  });

  test('a pending gather is completed first when another starts, when its buffer is released and when the threads shut down', () => {
    // Arrange
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    // Of 200, 216 and 232 rows: 200, 216 and 232 KiB, so the KiB the thread holds say which it holds.
    const sources = [sharedRows(200, 10), sharedRows(216, 11), sharedRows(232, 12)];
    const indices = indicesOf(60, 200, 13);
    const want = sources.map((s) => bits(expected(s, indices)));
    const intos = [target(60), target(60), target(60)];

    // Act + Assert: three sources in turn (past the 2 a thread holds), then the first again.
    gatherRowsInBackground(sources[0], cols, indices, intos[0]);
    gatherRowsInBackground(sources[1], cols, indices, intos[1]);
    expect(bits(intos[0].subarray(0, 60 * cols))).toEqual(want[0]);
    gatherRowsInBackground(sources[2], cols, indices, intos[2]);
    expect(bits(intos[1].subarray(0, 60 * cols))).toEqual(want[1]);
    intos[0].fill(NaN);
    gatherRowsInBackground(sources[0], cols, indices, intos[0]);
    expect(bits(intos[2].subarray(0, 60 * cols))).toEqual(want[2]);
    releaseBatchBuffer(intos[0]);
    expect(bits(intos[0].subarray(0, 60 * cols))).toEqual(want[0]);
    // The thread holds at most 2 (the last two: 2, then 0); forgotten, a source is let go of at
    // once (the one named, not the oldest), and posted again when next used.
    forgetGatherSource(sources[0]);
    expect(kernelThreadStats().gatherSourcesHeld).toEqual({ count: 1, kib: 232 });
    forgetGatherSource(sources[2]);
    expect(kernelThreadStats().gatherSourcesHeld).toEqual({ count: 0, kib: 0 });
    forgetGatherSource(sources[1]); // not held: nothing to do
    expect(kernelThreadStats().gatherSourcesHeld).toEqual({ count: 0, kib: 0 });
    // Forgetting the source of a pending gather completes that gather first.
    intos[2].fill(NaN);
    gatherRowsInBackground(sources[2], cols, indices, intos[2]);
    forgetGatherSource(sources[2]);
    expect(bits(intos[2].subarray(0, 60 * cols))).toEqual(want[2]);
    expect(bits(Float32Array.from(product()))).toEqual(bits(Float32Array.from(product()))); // the pool still works
    intos[1].fill(NaN);
    gatherRowsInBackground(sources[1], cols, indices, intos[1]);
    shutdownKernelThreads();
    expect(bits(intos[1].subarray(0, 60 * cols))).toEqual(want[1]);
    forgetGatherSource(sources[1]); // no pool: nothing to do
  });

  test('a forgotten source of 64 MiB or more is freed, not only let go of: the threads restart at once, and its memory leaves the process', async () => {
    // Arrange: a source of 240 MiB, resident (filled), gathered from once, so the thread holds it.
    // A kernel thread's isolate collects only when it allocates, which it hardly does: before the
    // threads ended on forgetting, every training split a process used stayed resident.
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    setFlagsFromString('--expose-gc');
    const collect = runInNewContext('gc') as () => void;
    const rows = Math.ceil((240 * 2 ** 20) / (cols * 4));
    let source: Float32Array | null = new Float32Array(new SharedArrayBuffer(rows * cols * 4)).fill(1);
    const into = target(40);
    const gatheredBefore = kernelThreadStats().gatheredByThreads;
    const gather = gatherRowsInBackground(source, cols, indicesOf(40, rows, 15), into)!;
    untilClaimed();
    gather.finish();
    const held = process.memoryUsage().rss;

    // Act: the thread forgets it; this thread drops it too and collects.
    expect(kernelThreadStats().gatheredByThreads - gatheredBefore).toBe(40);
    const restartsBefore = kernelThreadStats().threadRestarts;
    forgetGatherSource(source);
    // New threads, started at once, on the same memory.
    expect([wasmKernelStatus().threads, kernelThreadStats().threadRestarts - restartsBefore]).toEqual([2, 1]);
    source = null;
    collect();

    // Assert: within 10 s (the buffer goes when the last isolate holding it has collected).
    let freed = 0;
    for (const deadline = performance.now() + 10_000; performance.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      freed = held - process.memoryUsage().rss;
      if (freed > 200 * 2 ** 20) break;
      collect();
    }
    expect(freed / 2 ** 20, 'MiB of RSS freed after the source was forgotten and dropped').toBeGreaterThan(200);
    const before = threadedProductCount();
    expect(bits(Float32Array.from(product()))).toEqual(bits(Float32Array.from(product()))); // the threads work again
    expect(threadedProductCount() - before).toBe(2);
    // The batch buffer made before the restart is still in the threads' memory: the new thread gathers into it.
    const small = sharedRows(64, 17);
    const indices = indicesOf(40, 64, 18);
    const gatheredAfter = kernelThreadStats().gatheredByThreads;
    const again = gatherRowsInBackground(small, cols, indices, into);
    expect(again, 'a gather into the batch buffer made before the restart').not.toBeNull();
    untilClaimed();
    again!.finish();
    expect(bits(into.subarray(0, 40 * cols))).toEqual(bits(expected(small, indices)));
    expect(kernelThreadStats().gatheredByThreads).toBeGreaterThan(gatheredAfter);
    releaseBatchBuffer(into);
  });

  test('the threads restart for a held source of exactly 64 MiB, not for one just under it, one never held, or with no threads running', () => {
    // Arrange: after a restart the new threads have gathered nothing, so the count says which happened.
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const floats = RESTART_FOR_SOURCE_BYTES / 4;
    const width = 256; // divides both sources' lengths
    const gatheredFrom = (source: Float32Array) => {
      const into = createBatchBuffer(8 * width);
      const gather = gatherRowsInBackground(source, width, indicesOf(8, source.length / width, 16), into)!;
      untilClaimed();
      gather.finish();
      releaseBatchBuffer(into);
      expect(kernelThreadStats().gatheredByThreads).toBeGreaterThan(0);
    };
    let restarts = kernelThreadStats().threadRestarts;
    const restarted = () => restarts !== (restarts = kernelThreadStats().threadRestarts);
    const under = new Float32Array(new SharedArrayBuffer(RESTART_FOR_SOURCE_BYTES - 4 * width));
    const exact = new Float32Array(new SharedArrayBuffer(RESTART_FOR_SOURCE_BYTES));

    // Act + Assert
    gatheredFrom(under);
    forgetGatherSource(under);
    expect(restarted(), 'just under 64 MiB').toBe(false);
    forgetGatherSource(exact); // never held
    expect(restarted(), 'never held').toBe(false);
    gatheredFrom(exact);
    forgetGatherSource(exact);
    expect(restarted(), 'exactly 64 MiB').toBe(true);
    expect(floats * 4).toBe(64 * 2 ** 20);
    shutdownKernelThreads();
    expect(() => forgetGatherSource(exact)).not.toThrow(); // no threads: nothing to do
  });

  test('a source of 64 MiB or more dropped past the 2 a thread holds is freed the same way: the threads restart before taking the third', () => {
    // Arrange: a 64 MiB source (not filled: only held, never resident) and three small ones.
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const width = 256; // divides every source's length
    const large = new Float32Array(new SharedArrayBuffer(RESTART_FOR_SOURCE_BYTES));
    const shared = [1, 2, 3].map((seed) => {
      const data = new Float32Array(new SharedArrayBuffer(64 * width * 4));
      data.set(normals(seed, 64 * width));
      return data;
    });
    const into = createBatchBuffer(8 * width);
    const restartsAfter = (source: Float32Array) => {
      const before = kernelThreadStats().threadRestarts;
      const indices = indicesOf(8, source.length / width, 19);
      into.fill(NaN);
      const gather = gatherRowsInBackground(source, width, indices, into);
      expect(gather, 'a gather on the kernel thread').not.toBeNull();
      untilClaimed();
      gather!.finish();
      const want = new Float32Array(8 * width);
      indices.forEach((row, r) => want.set(source.subarray(row * width, (row + 1) * width), r * width));
      expect(bits(into.subarray(0, 8 * width))).toEqual(bits(want));
      return kernelThreadStats().threadRestarts - before;
    };

    // Act + Assert: large, then two small ones; the second small one drops the large one.
    expect(restartsAfter(large), 'held: large').toBe(0);
    expect(restartsAfter(shared[0]), 'held: large, small 0').toBe(0);
    expect(restartsAfter(large), 'held already: nothing dropped').toBe(0);
    expect(restartsAfter(shared[1]), 'drops the large one').toBe(1);
    // The new threads hold only the small one just taken; dropping a small one restarts nothing.
    expect(restartsAfter(shared[0]), 'held: small 1, small 0').toBe(0);
    expect(restartsAfter(shared[2]), 'drops small 1').toBe(0);
    forgetGatherSource(shared[2]);
    expect(kernelThreadStats().gatherSourcesHeld).toEqual({ count: 1, kib: 64 });
    releaseBatchBuffer(into);
  });

  test('finish(), releasing the target and shutting down each wait for the row the kernel thread is copying', () => {
    // Arrange: one row of 8 Mi floats (32 MiB, milliseconds to copy), which the thread claims at
    // once; this thread then finds no row left, and must wait for the thread's: without the wait,
    // the row's end is read before it is there. (Not asserted the other way round: on a busy
    // machine this thread may be descheduled long enough for the copy to finish anyway.)
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const floats = 8 * 2 ** 20;
    const source = new Float32Array(new SharedArrayBuffer(floats * 4)).fill(1.5);
    const into = createBatchBuffer(floats);
    const lastAfter = (act: (gather: { finish(): void }) => void) => {
      into.fill(NaN);
      const gather = gatherRowsInBackground(source, floats, Int32Array.of(0), into)!;
      sleep(0.2); // the thread has claimed the row and is copying it
      act(gather);
      const last = into[floats - 1];
      gather.finish();
      return last;
    };

    // Act + Assert
    expect(lastAfter((gather) => gather.finish())).toBe(1.5);
    expect(lastAfter(() => shutdownKernelThreads())).toBe(1.5);
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const other = createBatchBuffer(floats).fill(NaN); // the new pool's memory
    gatherRowsInBackground(source, floats, Int32Array.of(0), other);
    sleep(0.2);
    releaseBatchBuffer(other);
    expect(other[floats - 1]).toBe(1.5);
  });

  test('when the kernel thread stops answering during a gather, finish() and the next product copy every row here (the pool is broken after)', async () => {
    for (const stop of ['finish', 'product'] as const) {
      // Arrange: a pool of our own whose thread is terminated before the gather (so it never
      // answers, deterministically), and the exit not yet noticed: as a thread that hangs.
      // Answers time out fast. The source is a view from row 1 of its buffer.
      const pool = new DenseThreads(sharedModule(variants[0]), 2, WORKER_URL);
      pool.answerTimeoutMs = 300;
      await (pool as unknown as { workers: Array<{ worker: { terminate(): Promise<number> } }> }).workers[0].worker.terminate();
      (pool as unknown as { broken: string | null }).broken = null;
      const floats = 4096;
      const whole = new Float32Array(new SharedArrayBuffer(5 * floats * 4));
      for (let i = 0; i < whole.length; i++) whole[i] = i;
      const source = whole.subarray(floats);
      const indices = Int32Array.of(3, 1, 2, 0);
      const into = pool.rowsBuffer(4 * floats).fill(NaN);
      const gather = pool.startGather(source, floats, indices, into)!;

      // Act
      if (stop === 'finish') gather.finish();
      else {
        const heap = new Float32Array(64);
        expect(() => pool.forward(heap.buffer, new Float32Array(8), { dataId: {}, offset: 0 }, null, 128, 2, 4, 2), stop).toThrow(DenseThreadsError);
      }

      // Assert: every row whole; the pool says why it cannot run, and letting go of a source does not wait for the thread.
      const wrong = Array.from(indices).findIndex((row, r) => into[r * floats] !== (row + 1) * floats || into[(r + 1) * floats - 1] !== (row + 2) * floats - 1);
      expect(wrong, `${stop}: first wrong row`).toBe(-1);
      expect(pool.failure, stop).toMatch(/did not answer/);
      expect(() => pool.forgetGatherSource(source.buffer), stop).not.toThrow();
      pool.shutdown();
    }
  });

  describe('restarting the threads for a large source the thread would drop', () => {
    const width = 256;
    const indices = Int32Array.of(3, 0, 2, 1);
    /** A pool of our own that has gathered from a 64 MiB source (held: the oldest of 2 after the next). */
    const poolHoldingLarge = () => {
      const pool = new DenseThreads(sharedModule(variants[0]), 2, WORKER_URL);
      const into = pool.rowsBuffer(4 * width);
      pool.startGather(new Float32Array(new SharedArrayBuffer(RESTART_FOR_SOURCE_BYTES)), width, indices, into)!.finish();
      const small = [1, 2].map((value) => new Float32Array(new SharedArrayBuffer(4 * width * 4)).fill(value));
      return { pool, into, small };
    };
    const internals = (pool: DenseThreads) => pool as unknown as { workers: Array<{ worker: { terminate(): Promise<number> } }>; broken: string | null; workerUrl: URL };

    test('a pool that broke finishing the pending gather is not restarted (a hung thread would not end), and starts no gather', async () => {
      // Arrange: the thread terminated, its end not noticed (a hung thread, as above); a gather
      // from a small source posted to it, never answered. Answers time out fast.
      const { pool, into, small } = poolHoldingLarge();
      pool.answerTimeoutMs = 300;
      await internals(pool).workers[0].worker.terminate();
      internals(pool).broken = null;
      expect(pool.startGather(small[0], width, indices, into)).not.toBeNull();

      // Act: a second small source would drop the large one; finishing the pending gather breaks the pool first.
      const next = pool.startGather(small[1], width, indices, into);

      // Assert: the pending gather's rows were copied here; no restart, no new gather.
      expect(next).toBeNull();
      expect(pool.failure).toMatch(/did not answer/);
      expect(pool.restarts).toBe(0);
      expect(into.every((x) => x === 1)).toBe(true);
      pool.shutdown();
    });

    test('a restart whose new threads do not start leaves the pool broken, saying why, and the gather that asked for it null', () => {
      // Arrange: new workers from a script that never says it is ready; a start times out fast.
      const { pool, into, small } = poolHoldingLarge();
      pool.startGather(small[0], width, indices, into)!.finish();
      pool.startTimeoutMs = 200;
      internals(pool).workerUrl = new URL('data:text/javascript,setInterval(() => {}, 1000)');

      // Act
      const next = pool.startGather(small[1], width, indices, into);

      // Assert
      expect(next).toBeNull();
      expect(pool.restarts).toBe(1);
      expect(pool.failure).toBe('a kernel thread did not start within 0.2 s');
      pool.shutdown();
    });
  });

  test('null when no kernel thread can (then copy the rows here); bad arguments are CoreArgumentErrors naming them', () => {
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    const source = sharedRows(20, 20);
    const indices = indicesOf(10, 20, 21);
    expect(gatherRowsInBackground(new Float32Array(source), cols, indices, target(10))).toBeNull(); // not shared
    expect(gatherRowsInBackground(source, cols, indices, new Float32Array(10 * cols))).toBeNull(); // not a batch buffer
    expect(gatherRowsInBackground(source, cols, new Int32Array(0), target(10))).toBeNull(); // nothing to gather
    // Each message names the op, the argument, what it must be and what it got.
    const bad: Array<[unknown[], string, RegExp]> = [
      [[[1, 2], cols, indices, target(10)], 'source', /must be a Float32Array, got /],
      [[source, 256, indices, target(10)], 'cols', /must be an integer >= 1 dividing source\.length \(5140\), got 256/],
      [[source, -257, indices, target(10)], 'cols', /got -257/],
      [[source, 2.5, indices, target(10)], 'cols', /got 2\.5/],
      [[source, cols, [1, 2], target(10)], 'rowIndices', /must be an Int32Array, got /],
      [[source, cols, Int32Array.of(0, 20), target(10)], 'rowIndices[1]', /must be a row in \[0, 20\), got 20/],
      [[source, cols, Int32Array.of(-1), target(10)], 'rowIndices[0]', /got -1/],
      [[source, cols, indices, target(9)], 'target', /must be a Float32Array of at least 2570 floats \(rows × cols\), got /],
    ];
    for (const [args, argument, message] of bad) {
      const call = () => (gatherRowsInBackground as (...a: unknown[]) => unknown)(...args);
      expect(call, argument).toThrow(CoreArgumentError);
      try {
        call();
      } catch (error) {
        expect((error as CoreArgumentError).argument, argument).toBe(argument);
        expect((error as CoreArgumentError).op, argument).toBe('gatherRowsInBackground');
        expect((error as Error).message, argument).toMatch(message);
      }
    }
    // One float per row is a valid shape.
    const column = new Float32Array(new SharedArrayBuffer(20 * 4));
    column.forEach((_, i) => { column[i] = i; });
    const gathered = createBatchBuffer(3);
    gatherRowsInBackground(column, 1, Int32Array.of(19, 0, 7), gathered)!.finish();
    expect(Array.from(gathered)).toEqual([19, 0, 7]);
    configureKernelThreads(1);
    expect(gatherRowsInBackground(source, cols, indices, target(10))).toBeNull();
  });
});

describe('configureKernelThreads', () => {
  onWasmKernelsThenOneThread();

  test('reports the threads in wasmKernelStatus, restarts after shutdownKernelThreads, and 1 thread runs no pool', () => {
    expect(configureKernelThreads(2, { minWork: 0, adaptive: false })).toMatchObject({ threads: 2, threadsReason: null });
    expect(wasmKernelStatus().threads).toBe(2);
    shutdownKernelThreads();
    expect(threadedProductCount()).toBe(0);
    tf.tidy(() => denseScores(tf.ones([8, 16]), tf.ones([16, 8]), tf.zeros([8])));
    expect(threadedProductCount()).toBe(1); // a new pool
    configureKernelThreads(1);
    expect(wasmKernelStatus()).toMatchObject({ threads: 1, threadsReason: null });
    tf.tidy(() => denseScores(tf.ones([8, 16]), tf.ones([16, 8]), tf.zeros([8])));
    expect(threadedProductCount()).toBe(0);
  });

  test('setKernelIdleTask: the task runs once, on this thread, during the next threaded product; never without threads', () => {
    const product = () => tf.tidy(() => denseScores(tf.ones([8, 16]), tf.ones([16, 8]), tf.zeros([8])).dataSync());
    let runs = 0;
    configureKernelThreads(2, { minWork: 0, adaptive: false });
    setKernelIdleTask(() => runs++);
    product();
    product();
    expect(runs).toBe(1);
    configureKernelThreads(1);
    setKernelIdleTask(() => runs++);
    product();
    expect(runs).toBe(1);
    setKernelIdleTask(null);
  });

  test("a slow idle task makes the caller take fewer of x·W's rows, and the results keep their bits", () => {
    // Arrange: layer 1 is 200 × 256 × 64; a 20 ms idle task is worth more than all its rows.
    const config = { inputDim: 256, hiddenDims: [64], classes: 10, batchNorm: true };
    const labels = Array.from({ length: 200 }, (_, i) => i % 10);
    const run = (idleMs: number) => {
      const callerRows: number[] = [];
      const values = trainFresh(config, 11, (model, state) => {
        for (let step = 0; step < 4; step++) {
          if (idleMs > 0) setKernelIdleTask(() => { const until = performance.now() + idleMs; while (performance.now() < until); });
          trainStep(model, state, { rows: 200, cols: 256, data: normals(600 + step, 200 * 256) }, labels, { lambda: 0.01, learningRate: 0.05, momentum: 0.9 });
          setKernelIdleTask(null);
          callerRows.push(kernelThreadStats().lastForwardCallerRows);
        }
      });
      return { callerRows, values };
    };
    configureKernelThreads(2, { minWork: 1 << 20, adaptive: false });

    // Act
    const plain = run(0);
    const withTask = run(20);

    // Assert: 88 rows without a task (callerShare: the caller also copies the rows in); after the
    // first step has measured the task, none.
    expect(plain.callerRows).toEqual([88, 88, 88, 88]);
    expect(withTask.callerRows[0]).toBe(88);
    expect(withTask.callerRows.slice(1)).toEqual([0, 0, 0]);
    withTask.values.forEach((v, i) => expect(bits(v), `array ${i}`).toEqual(bits(plain.values[i])));
  });

  test('with the kernels off there are no threads, and the status says why', () => {
    configureWasmKernels('off');
    try {
      expect(configureKernelThreads(2)).toMatchObject({ variant: null, threads: 1, threadsReason: 'no kernel build runs' });
    } finally {
      configureWasmKernels('auto');
    }
  });

  test('bad counts and minWork are CoreArgumentErrors naming the argument', () => {
    for (const bad of [0, 1.5, 9, -1, '2'])
      expect(() => configureKernelThreads(bad as number)).toThrow(CoreArgumentError);
    expect(() => configureKernelThreads(2, { minWork: -1 })).toThrow(/options\.minWork/);
    expect(() => configureKernelThreads(2, { adaptive: 'yes' as unknown as boolean })).toThrow(/options\.adaptive/);
    expect(() => configureKernelThreads(0)).toThrow(/threads/);
  });
});
