import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { callerShare, DenseThreads, DenseThreadsError, splitRows, type TensorRef } from './dense-threads.js';

// Fixed cases for mutants of the threaded kernels (dense-threads.ts) that the property and
// bit-identity suites did not kill (docs/mutation.md, "the threaded kernels"): exact row splits,
// the pool's failure states, growing its memory, a stale copy of x, and the back-off rule. The
// operands are small integers, so every product is exact in float32 whatever the summation
// order, and the expected values are plain JavaScript sums.

const WORKER_URL = new URL('../worker/dense-worker.mjs', import.meta.url);
const WasmModuleClass = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => object } }).WebAssembly.Module;
// The build wasm-kernels.ts loads: BNMLP_WASM_KERNELS_DIR (the planted kernel bugs of scripts/kernel-mutants.mjs) or wasm/.
const sharedModule = () => {
  const dir = process.env.BNMLP_WASM_KERNELS_DIR;
  const file = 'kernels-simd128-shared.wasm';
  return new WasmModuleClass(readFileSync(dir ? join(dir, file) : new URL(`../wasm/${file}`, import.meta.url)));
};

/** Small integers in [−3, 3] from a seed (a linear congruential sequence; exact products and sums). */
function smallInts(seed: number, size: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 16) % 7 - 3;
  });
}

/** x·W + b in float64 (exact for small integers). */
function product(x: Float32Array, w: Float32Array, b: Float32Array | null, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let sum = b ? b[j] : 0;
      for (let p = 0; p < k; p++) sum += x[i * k + p] * w[p * n + j];
      out[i * n + j] = sum;
    }
  return out;
}

/** A heap standing in for tfjs's: named float32 arrays laid out one after another. */
function makeHeap(parts: Record<string, number>): { heap: Float32Array; at: Record<string, number>; ref: (name: string) => TensorRef } {
  const at: Record<string, number> = {};
  let top = 0;
  for (const [name, floats] of Object.entries(parts)) {
    at[name] = top;
    top += floats;
  }
  const heap = new Float32Array(top + 16);
  const ids: Record<string, object> = {};
  const ref = (name: string) => ({ dataId: (ids[name] ??= {}), offset: at[name] * 4 });
  return { heap, at, ref };
}

function withPool(threads: number, body: (pool: DenseThreads) => void | Promise<void>): Promise<void> | void {
  const pool = new DenseThreads(sharedModule(), threads, WORKER_URL);
  let result: void | Promise<void>;
  try {
    result = body(pool);
  } catch (error) {
    pool.shutdown();
    throw error;
  }
  if (result instanceof Promise) return result.finally(() => pool.shutdown());
  pool.shutdown();
}

describe('row splits, exactly', () => {
  test('three and four parts, a first share, and fewer rows than one aligned block', () => {
    expect(splitRows(100, 3, 4, 0.4)).toEqual([[0, 40], [40, 72], [72, 100]]);
    expect(splitRows(100, 4, 4)).toEqual([[0, 24], [24, 52], [52, 76], [76, 100]]);
    expect(splitRows(10, 2, 4, 1)).toEqual([[0, 10], [10, 10]]);
    expect(splitRows(3, 2, 4)).toEqual([[0, 0], [0, 3]]);
    expect(splitRows(37, 3, 16)).toEqual([[0, 16], [16, 32], [32, 37]]);
  });

  test("the caller's share: p / (c + 2p) for two threads only, 1 / threads otherwise", () => {
    expect(callerShare(20, 2, true)).toBeCloseTo(1.4 / 3.8, 12);
    expect(callerShare(50, 3, true)).toBe(1 / 3);
    expect(callerShare(50, 3, false)).toBe(1 / 3);
    expect(callerShare(50, 4, true)).toBe(1 / 4);
  });
});

describe('DenseThreads: failures', () => {
  test('after shutdown the pool says so and refuses products', () =>
    withPool(2, (pool) => {
      expect(pool.failure).toBeNull();
      pool.shutdown();
      expect(pool.failure).toBe('shut down');
      const { heap, ref, at } = makeHeap({ x: 16, w: 16, out: 16 });
      expect(() => pool.forward(heap.buffer, ref('x'), ref('w'), null, at.out * 4, 4, 4, 4)).toThrow(new DenseThreadsError('shut down'));
    }));

  test("a worker's error and exit are the pool's failure (the first one is kept)", () =>
    withPool(2, async (pool) => {
      const { worker } = (pool as unknown as { workers: Array<{ worker: import('node:worker_threads').Worker }> }).workers[0];
      worker.emit('error', new Error('boom'));
      expect(pool.failure).toBe('a kernel thread failed: boom');
      const { heap, ref, at } = makeHeap({ x: 16, w: 16, out: 16 });
      let thrown: unknown;
      try {
        pool.forward(heap.buffer, ref('x'), ref('w'), null, at.out * 4, 4, 4, 4);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(DenseThreadsError);
      expect((thrown as Error).name).toBe('DenseThreadsError');
      expect((thrown as Error).message).toBe('a kernel thread failed: boom');
      await worker.terminate();
      expect(pool.failure).toBe('a kernel thread failed: boom');
    }));

  test('a worker that exits is the failure', () =>
    withPool(2, async (pool) => {
      const { worker } = (pool as unknown as { workers: Array<{ worker: import('node:worker_threads').Worker }> }).workers[0];
      await new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        void worker.terminate();
      });
      expect(pool.failure).toBe('a kernel thread exited (code 1)');
    }));

  test('a part that traps on its thread fails the product and the pool', () =>
    withPool(2, (pool) => {
      const run = (pool as unknown as { run(parts: Array<[number, number]>, request: () => [number, number[], number[]]): void }).run.bind(pool);
      // Part 1 (the worker's) reads far outside the shared memory; part 0 is empty.
      expect(() => run([[0, 0], [0, 4]], () => [1, [0x7fff0000, 0, 0, 0, 4, 64, 8, 8], []])).toThrow(new DenseThreadsError('a kernel thread trapped'));
      expect(pool.failure).toBe('a kernel thread trapped');
    }));

  test("a product beyond the threads' 1 GiB is a DenseThreadsError saying so (callers then run unthreaded)", () =>
    withPool(2, (pool) => {
      const { heap, ref, at } = makeHeap({ w: 16, out: 16 });
      const k = 2 ** 28 + 16;
      expect(() => pool.forward(heap.buffer, new Float32Array(0), ref('w'), null, at.out * 4, 1, k, 1)).toThrow(
        new DenseThreadsError("the threads' memory cannot grow to 1025 MiB (at most 1 GiB)"),
      );
    }));
});

describe('DenseThreads: workers', () => {
  type Workers = { workers: Array<{ worker: import('node:worker_threads').Worker }> };

  test('threads − 1 workers start (the caller is the first thread), adaptive by default; shutdown ends them', async () => {
    const pool = new DenseThreads(sharedModule(), 3, WORKER_URL);
    const workers = [...(pool as unknown as Workers).workers].map((w) => w.worker);
    expect(workers).toHaveLength(2);
    expect(pool.adaptive).toBe(true);
    const exits = workers.map((worker) => new Promise<number>((resolve) => worker.once('exit', resolve)));
    pool.shutdown();
    // A worker told to exit ends its loop by itself (exit code 0); terminate() would give 1.
    const codes = await Promise.race([Promise.all(exits), new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000))]);
    if (codes === 'hung') for (const worker of workers) void worker.terminate();
    expect(codes).toEqual([0, 0]);
  });

  test('a worker that never becomes ready is a DenseThreadsError after 10 s', () => {
    const idle = new URL('data:text/javascript,setInterval(() => {}, 1000)');
    const started = performance.now();
    expect(() => new DenseThreads(sharedModule(), 2, idle)).toThrow(new DenseThreadsError('a kernel thread did not start within 10 s'));
    expect(performance.now() - started).toBeGreaterThanOrEqual(9_000);
  }, 60_000);
});

describe('DenseThreads: a worker that starts and then never answers', () => {
  test('is accepted once READY is set (even without a notify), and a product then fails with a DenseThreadsError that marks the pool broken', () => {
    // Arrange: a worker that sets READY without notifying (the caller's wait times out after 10 s
    // and then reads READY) and never answers a request.
    const script = "import { workerData } from 'node:worker_threads'; Atomics.store(new Int32Array(workerData.control), 4, 1); setInterval(() => {}, 1000);";
    const stalled = new URL(`data:text/javascript,${encodeURIComponent(script)}`);
    const pool = new DenseThreads(sharedModule(), 2, stalled);
    try {
      pool.answerTimeoutMs = 500;
      const [m, k, n] = [64, 8, 8];
      const { heap, ref, at } = makeHeap({ w: k * n, out: m * n });

      // Act
      const started = performance.now();
      const error = (() => {
        try {
          pool.forward(heap.buffer, new Float32Array(m * k), ref('w'), null, at.out * 4, m, k, n);
        } catch (e) {
          return e;
        }
        return null;
      })();

      // Assert
      expect(error).toEqual(new DenseThreadsError('a kernel thread did not answer in 0.5 s'));
      expect(performance.now() - started).toBeGreaterThanOrEqual(500);
      expect(pool.failure).toBe('a kernel thread did not answer in 0.5 s');
    } finally {
      pool.shutdown();
    }
  }, 60_000);
});

describe('DenseThreads: products', () => {
  test("the new W of a momentum step, packed by each thread, is what the next x·W reads", () =>
    withPool(2, (pool) => {
      const [m, k, n] = [8, 40, 9]; // n = 9: a full panel and one of 1 column; k = 40: both threads step and pack rows of W
      const { heap, ref, at } = makeHeap({ x: m * k, g: m * n, w: k * n, v: k * n, outW: k * n, outV: k * n, b: n, out: m * n });
      heap.set(smallInts(5, m * k), at.x);
      heap.set(smallInts(6, m * n), at.g);
      heap.set(smallInts(7, k * n), at.w);
      heap.set(smallInts(8, k * n), at.v);
      heap.set(smallInts(9, n), at.b);
      // η = 1, ρ = 1, no decay: v' = v + xᵀg, W' = W − v' (exact in small integers).
      pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), ref('v'), ref('outW'), ref('outV'), m, k, n, 0, 1, 1);
      const x = heap.slice(at.x, at.x + m * k);
      const g = heap.slice(at.g, at.g + m * n);
      const expectedW = new Float32Array(k * n);
      for (let p = 0; p < k; p++)
        for (let j = 0; j < n; j++) {
          let grad = 0;
          for (let i = 0; i < m; i++) grad += x[i * k + p] * g[i * n + j];
          expectedW[p * n + j] = heap[at.w + p * n + j] - (heap[at.v + p * n + j] + grad);
        }
      expect(Array.from(heap.subarray(at.outW, at.outW + k * n))).toEqual(Array.from(expectedW));
      // x·W' + b with W' the step's output tensor: the pool's packed copy of it.
      const rows = smallInts(10, m * k);
      pool.forward(heap.buffer, rows, ref('outW'), ref('b'), at.out * 4, m, k, n);
      expect(Array.from(heap.subarray(at.out, at.out + m * n))).toEqual(Array.from(product(rows, expectedW, heap.slice(at.b, at.b + n), m, k, n)));
    }));


  test('rows in a rowsBuffer are read in place by x·W and the weight step (no x region), exactly; released, its memory is reused', () =>
    withPool(2, (pool) => {
      // Arrange: x written into the pool's own memory, as the trainer's batch buffers are.
      const [m, k, n] = [12, 40, 9];
      const { heap, ref, at } = makeHeap({ w: k * n, v: k * n, g: m * n, outW: k * n, outV: k * n, b: n, out: m * n });
      const buffer = pool.rowsBuffer(m * k);
      const x = smallInts(21, m * k);
      buffer.set(x);
      heap.set(smallInts(22, k * n), at.w);
      heap.set(smallInts(23, m * n), at.g);
      heap.set(smallInts(24, n), at.b);
      const named = (pool as unknown as { named: Map<string, unknown> }).named;

      // Act
      pool.forward(heap.buffer, { rows: buffer, tag: {} }, ref('w'), ref('b'), at.out * 4, m, k, n);
      const scores = heap.slice(at.out, at.out + m * n);
      pool.weightStep(heap.buffer, { rows: buffer, tag: {} }, ref('g'), ref('w'), ref('v'), ref('outW'), ref('outV'), m, k, n, 0, 1, 0);

      // Assert: exact results (η = 1, ρ = 0, no decay: v' = xᵀg, W' = W − xᵀg), and no x region was made.
      expect(Array.from(scores)).toEqual(Array.from(product(x, heap.slice(at.w, at.w + k * n), heap.slice(at.b, at.b + n), m, k, n)));
      const xT = new Float32Array(k * m);
      for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) xT[p * m + i] = x[i * k + p];
      const grad = product(xT, heap.slice(at.g, at.g + m * n), null, k, m, n);
      expect(Array.from(heap.subarray(at.outV, at.outV + k * n))).toEqual(Array.from(grad));
      expect(Array.from(heap.subarray(at.outW, at.outW + k * n))).toEqual(Array.from(heap.slice(at.w, at.w + k * n), (w, i) => w - grad[i]));
      expect([...named.keys()].filter((name) => name.startsWith('x'))).toEqual([]);
      // A plain array is not the pool's, and releasing it does nothing; the released buffer's memory is handed out again.
      pool.releaseRowsBuffer(new Float32Array(m * k));
      pool.releaseRowsBuffer(buffer);
      expect(pool.rowsBuffer(m * k).byteOffset).toBe(buffer.byteOffset);
    }));

  test('training steps in a loop reuse the memory of the copies they drop: it stops growing after the first steps', () =>
    withPool(2, (pool) => {
      // Arrange: as in training, every step reads the previous step's W and v and writes new
      // tensors (new dataIds), on a new batch x and gradient g; n = 9 makes a packed W of 2 panels.
      const [m, k, n] = [8, 40, 9];
      const { heap, at } = makeHeap({ x: m * k, g: m * n, w0: k * n, v0: k * n, w1: k * n, v1: k * n, b: n, out: m * n });
      const fresh = (name: string): TensorRef => ({ dataId: {}, offset: at[name] * 4 });
      heap.set(smallInts(1, k * n), at.w0);
      let w = fresh('w0');
      let v = fresh('v0');
      const b = fresh('b');
      const top = () => (pool as unknown as { top: number }).top;
      const step = (s: number) => {
        heap.set(smallInts(100 + s, m * k), at.x);
        heap.set(smallInts(200 + s, m * n), at.g);
        const [outW, outV] = s % 2 === 0 ? [fresh('w1'), fresh('v1')] : [fresh('w0'), fresh('v0')];
        pool.weightStep(heap.buffer, fresh('x'), fresh('g'), w, v, outW, outV, m, k, n, 0, 0.001, 0.9);
        pool.forward(heap.buffer, fresh('x'), outW, b, at.out * 4, m, k, n);
        [w, v] = [outW, outV];
      };

      // Act
      for (let s = 0; s < 6; s++) step(s);
      const afterWarmUp = top();
      for (let s = 6; s < 30; s++) step(s);

      // Assert: dropped copies (W, v, packed W) were released and their memory reused.
      expect(top()).toBe(afterWarmUp);
    }));

  test("a 64 MiB W (n = 8) is packed in one panel of 8 columns and no more: its copies fit the threads' 1 GiB", () =>
    withPool(2, (pool) => {
      const [m, k, n] = [1, 2 ** 21, 8];
      const { heap, ref, at } = makeHeap({ w: k * n, out: m * n });
      heap.fill(1, at.w, at.w + k * n);
      pool.forward(heap.buffer, new Float32Array(m * k).fill(1), ref('w'), null, at.out * 4, m, k, n);
      expect(Array.from(heap.subarray(at.out, at.out + n))).toEqual(new Array(n).fill(k));
      // The memory grew by the pages it needed, not more.
      const { memory, top } = pool as unknown as { memory: { buffer: ArrayBufferLike }; top: number };
      expect(memory.buffer.byteLength - top).toBeLessThan(65_536);
    }));

  test('a product larger than the initial 16 MiB grows the memory and stays exact', () =>
    withPool(2, (pool) => {
      const k = 5_000_000;
      const m = 1;
      const n = 1;
      const { heap, ref, at } = makeHeap({ w: k * n, b: n, out: m * n });
      heap.fill(1, at.w, at.w + k);
      heap[at.b] = -7;
      pool.forward(heap.buffer, new Float32Array(m * k).fill(1), ref('w'), ref('b'), at.out * 4, m, k, n);
      expect(heap[at.out]).toBe(k - 7);
    }));

  test("rows of x filling the threads' initial 16 MiB: each part copies and computes exactly its own rows", () =>
    withPool(2, (pool) => {
      const [m, k, n] = [4096, 1024, 8]; // x is the first region and ends where the initial memory ends
      const { heap, ref, at } = makeHeap({ w: k * n, out: m * n });
      heap.fill(1, at.w, at.w + k * n);
      const x = new Float32Array(m * k);
      for (let i = 0; i < m; i++) x.fill((i % 5) - 2, i * k, (i + 1) * k);
      pool.forward(heap.buffer, x, ref('w'), null, at.out * 4, m, k, n);
      const out = heap.subarray(at.out, at.out + m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) if (out[i * n + j] !== ((i % 5) - 2) * k) throw new Error(`out[${i}, ${j}] is ${out[i * n + j]}`);
    }));

  test("a probe of the worker's part leaves the momentum step's other rows NaN (the outputs are filled first)", () =>
    withPool(2, (pool) => {
      const [m, k, n] = [8, 40, 8]; // W's rows split [0, 16) and [16, 40)
      const { heap, ref, at } = makeHeap({ x: m * k, g: m * n, w: k * n, v: k * n, outW: k * n, outV: k * n });
      heap.set(smallInts(1, at.outW));
      pool.probePart = 1;
      pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), ref('v'), ref('outW'), ref('outV'), m, k, n, 0, 1, 1);
      for (const base of [at.outW, at.outV]) {
        expect(heap.subarray(base, base + 16 * n).every(Number.isNaN)).toBe(true);
        expect(heap.subarray(base + 16 * n, base + k * n).some(Number.isNaN)).toBe(false);
      }
    }));

  test("a probe of the worker's part leaves the gradient's other rows NaN", () =>
    withPool(2, (pool) => {
      const [m, k, n] = [8, 40, 8];
      const { heap, ref, at } = makeHeap({ x: m * k, g: m * n, w: k * n, outW: k * n, out: m * n });
      heap.set(smallInts(2, at.outW));
      // x is the pool's first region, at offset 0: the probe must not take the absent velocity
      // (argument 0) for it and fill it with NaN.
      pool.probePart = 1;
      pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), null, ref('outW'), null, m, k, n, 0, 0, 0);
      expect(heap.subarray(at.outW, at.outW + 16 * n).every(Number.isNaN)).toBe(true);
      expect(heap.subarray(at.outW + 16 * n, at.outW + k * n).some(Number.isNaN)).toBe(false);
    }));

  test('each thread of a weight step has a scratch region of its own', () =>
    withPool(3, (pool) => {
      const [m, k, n] = [8, 48, 8];
      const { heap, ref } = makeHeap({ x: m * k, g: m * n, w: k * n, outW: k * n });
      pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), null, ref('outW'), null, m, k, n, 0, 0, 0);
      const named = (pool as unknown as { named: Map<string, { offset: number; floats: number }> }).named;
      const scratch = [...named.entries()].filter(([name]) => name.startsWith('scratch')).sort(([a], [b]) => a.localeCompare(b));
      expect(scratch.map(([name]) => name)).toEqual(['scratch0', 'scratch1', 'scratch2']);
      expect(new Set(scratch.map(([, region]) => region.offset)).size).toBe(3);
      for (const [, region] of scratch) expect(region.floats).toBeGreaterThanOrEqual(m * 16);
    }));

  test.each([[1], [2], [3]])('%i thread(s): x·W + b with and without b, from arrays and tensors, whole panels and not', (threads) =>
    withPool(threads, (pool) => {
      // The last two cross every block edge of the packed kernel: rows past a 64-row tile with 4k + 2 left, k past 256-term passes, n past a group of 8 panels with a part panel.
      for (const [m, k, n] of [[9, 7, 5], [23, 18, 9], [6, 16, 12], [70, 600, 75], [130, 520, 8]]) {
        const { heap, ref, at } = makeHeap({ x: m * k, w: k * n, b: n, out: m * n });
        const x = smallInts(m, m * k);
        const w = smallInts(k, k * n);
        const b = smallInts(n, n);
        heap.set(x, at.x);
        heap.set(w, at.w);
        heap.set(b, at.b);
        pool.forward(heap.buffer, ref('x'), ref('w'), ref('b'), at.out * 4, m, k, n);
        expect(Array.from(heap.subarray(at.out, at.out + m * n))).toEqual(Array.from(product(x, w, b, m, k, n)));
        pool.forward(heap.buffer, x, ref('w'), null, at.out * 4, m, k, n);
        expect(Array.from(heap.subarray(at.out, at.out + m * n))).toEqual(Array.from(product(x, w, null, m, k, n)));
      }
    }));

  test("rows given as an array drop the pool's copy of a tensor x: a later weight step with that tensor copies it again", () =>
    withPool(2, (pool) => {
      const [m, k, n] = [12, 20, 9];
      const { heap, ref, at } = makeHeap({ x: m * k, w: k * n, out: m * n, g: m * n, grad: k * n });
      const x = smallInts(1, m * k);
      heap.set(x, at.x);
      heap.set(smallInts(2, k * n), at.w);
      heap.set(smallInts(3, m * n), at.g);
      // x (a tensor) copied in for x·W, then other rows of the same width from an array.
      pool.forward(heap.buffer, ref('x'), ref('w'), null, at.out * 4, m, k, n);
      pool.forward(heap.buffer, smallInts(99, m * k), ref('w'), null, at.out * 4, m, k, n);
      // The gradient xᵀ·g (+ 0·W) must read x, not the array's rows.
      pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), null, ref('grad'), null, m, k, n, 0, 0, 0);
      const g = heap.slice(at.g, at.g + m * n);
      const expected = new Float32Array(k * n);
      for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) expected[p * n + j] += x[i * k + p] * g[i * n + j];
      expect(Array.from(heap.subarray(at.grad, at.grad + k * n))).toEqual(Array.from(expected));
    }));
});

describe('DenseThreads: backing off', () => {
  type Judged = { judge(own: number, wait: number): void };

  test('a wait equal to the own part, or of exactly 0.05 ms, is not slow; the count restarts after a back-off', () =>
    withPool(1, (pool) => {
      const judge = (own: number, wait: number) => (pool as unknown as Judged).judge(own, wait);
      for (let i = 0; i < 4; i++) judge(0.5, 0.5);
      for (let i = 0; i < 4; i++) judge(0.01, 0.05);
      expect(pool.backOffs).toBe(0);
      expect(pool.shouldBackOff()).toBe(false);
      for (let i = 0; i < 4; i++) judge(0.5, 0.8);
      expect(pool.backOffs).toBe(1);
      while (pool.shouldBackOff());
      for (let i = 0; i < 3; i++) judge(0.5, 0.8);
      expect(pool.backOffs).toBe(1);
      expect(pool.shouldBackOff()).toBe(false);
      judge(0.5, 0.8);
      expect(pool.backOffs).toBe(2);
    }));

  test('products are judged only when adaptive and when another thread took part', () =>
    withPool(2, (pool) => {
      const seen: Array<[number, number]> = [];
      (pool as unknown as Judged).judge = (own, wait) => { seen.push([own, wait]); };
      const [m, k, n] = [16, 8, 8];
      const { heap, ref, at } = makeHeap({ x: m * k, w: k * n, out: m * n });
      pool.adaptive = false;
      pool.forward(heap.buffer, ref('x'), ref('w'), null, at.out * 4, m, k, n);
      expect(seen).toHaveLength(0);
      pool.adaptive = true;
      const before = performance.now();
      pool.forward(heap.buffer, ref('x'), ref('w'), null, at.out * 4, m, k, n);
      const took = performance.now() - before;
      expect(seen).toHaveLength(1);
      // The own part's time and the wait after it, each within the whole product's time.
      for (const ms of seen[0]) {
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThanOrEqual(took);
      }
    }));

  test("the idle task runs only while another thread works: not for a part-less worker, not in a pool of one", () => {
    const [m, k, n] = [8, 16, 8]; // k = 16: the weight step's rows are split in blocks of 16, so the worker's part is empty
    const { heap, ref } = makeHeap({ x: m * k, g: m * n, w: k * n, v: k * n, outW: k * n, outV: k * n });
    for (const threads of [2, 1])
      withPool(threads, (pool) => {
        // Arrange
        const seen: Array<[number, number]> = [];
        (pool as unknown as Judged).judge = (own, wait) => { seen.push([own, wait]); };
        let idleRuns = 0;
        pool.idleTask = () => { idleRuns++; };
        // Act
        pool.weightStep(heap.buffer, ref('x'), ref('g'), ref('w'), ref('v'), ref('outW'), ref('outV'), m, k, n, 0, 1, 1);
        // Assert: nothing to overlap with, so the task waits (kept for the next product) and nothing is judged.
        expect(idleRuns, `${threads} threads`).toBe(0);
        expect(pool.idleTask, `${threads} threads`).not.toBeNull();
        expect(seen, `${threads} threads`).toHaveLength(0);
      });
  });

  test('a pool of one thread asks no other thread, and judges nothing', () =>
    withPool(1, (pool) => {
      const seen: Array<[number, number]> = [];
      (pool as unknown as Judged).judge = (own, wait) => { seen.push([own, wait]); };
      const [m, k, n] = [16, 8, 8];
      const { heap, ref, at } = makeHeap({ x: m * k, w: k * n, out: m * n });
      pool.forward(heap.buffer, ref('x'), ref('w'), null, at.out * 4, m, k, n);
      expect(seen).toHaveLength(0);
      expect(pool.runs).toBe(1);
    }));
});
