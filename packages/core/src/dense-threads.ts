import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';

// The dense layers' two large products on several threads: x·W + b split by rows of x (W packed
// in 8-column panels, assembly/dense.ts packPanels), and the fused weight step split by rows of
// W. Each output entry is the same sum in the same order whichever thread computes it, so any
// thread count gives the bits of one thread (and of the unthreaded kernels): results never depend
// on the thread count.
//
// tfjs-backend-wasm's memory is not shared (its threaded build cannot start in Node.js), so
// threads cannot read tensors where tfjs keeps them. The kernels' '-shared' build runs on a
// shared memory of our own instead: inputs are copied in, outputs copied back into the tfjs
// output tensors. Copies are not free (a 100 × 3072 batch is 1.2 MB, and memcpy of data out of
// cache ran at 4–5 GB/s on the 2-core machine), so several are avoided: a batch in a rowsBuffer
// is read in place, the input x copied for the forward product is reused by the weight step of
// the same layer, and the W and velocity written by a weight step are kept here, tagged with the
// tfjs tensors they belong to, so the next step finds them. A training step's new W and velocity
// are not even copied back until read: Note [Deferred copies of the weight step's outputs] in
// wasm-kernels.ts.
// The worker threads live as long as the pool (until shutdown or the process ends), spinning
// briefly between requests (a train step asks again within a millisecond) and then sleeping.

/** The kernels the threads use (assembly/dense.ts). */
export interface DenseKernels {
  packPanels(w: number, packed: number, k: number, n: number, rowBegin: number, rowEnd: number): void;
  denseForwardPacked(a: number, packed: number, bias: number, out: number, tile: number, m: number, k: number, n: number): void;
  /** Floats denseForwardPacked's tile must hold (its blocking, assembly/dense.ts). */
  forwardTileFloats(): number;
  denseWeightStep(
    a: number, g: number, w: number, v: number, outW: number, outV: number, scratch: number,
    m: number, k: number, n: number, decay: number, learningRate: number, momentum: number, fused: number, rowBegin: number, rowEnd: number,
    packed: number,
  ): void;
}

/** A float32 tensor's data in the tfjs heap: its byte offset, and its dataId (identity tags copies). */
export interface TensorRef {
  readonly dataId: object;
  readonly offset: number;
}

/**
 * Rows of x held in a plain Float32Array (no tensor), with a tag naming these contents: a product
 * given the same tag finds the threads' copy of them and does not copy them again. A tag must not
 * outlive the contents it names (a train step makes a new one for its batch).
 */
export interface RowsRef {
  readonly rows: Float32Array;
  readonly tag: object;
}

// The WebAssembly JS API as used here (the project's lib settings carry no DOM or wasm types).
interface SharedMemory { readonly buffer: ArrayBufferLike; grow(pages: number): number }
interface WasmModule { readonly __brand?: 'WebAssembly.Module' }
const WebAssemblyApi = (globalThis as unknown as {
  WebAssembly: {
    Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => SharedMemory;
    Instance: new (module: WasmModule, imports: object) => { readonly exports: object };
  };
}).WebAssembly;

// Control block of one worker (Int32Array indices; float arguments share the buffer).
const REQUEST = 0, DONE = 1, OP = 2, STATUS = 3, READY = 4, GATHER_NEXT = 5, GATHER_STOP = 6, INT_ARGS = 8, FLOAT_ARGS = 32, CONTROL_INTS = 48;
const OP_EXIT = 0, OP_FORWARD = 1, OP_WEIGHT_STEP = 2, OP_GATHER = 3, OP_SOURCES = 4;
/** Gather sources a kernel thread holds at most (the oldest is dropped): each may be a whole data set. */
const MAX_GATHER_SOURCES = 2;
/**
 * A gather source of this many bytes or more that a kernel thread lets go of (forgotten, or
 * dropped past MAX_GATHER_SOURCES) restarts the kernel threads: a kernel thread never returns to
 * its event loop, so its isolate collects garbage only when it allocates, which it hardly does,
 * and a SharedArrayBuffer it once held stayed referenced, and resident, for good (five data sets
 * prepared and trained on in one process grew to 3.2 GB RSS, against 1.9 GB peak with the
 * restart). Ending a thread frees what its isolate held; smaller sources are only let go of.
 */
export const RESTART_FOR_SOURCE_BYTES = 64 * 2 ** 20;
const PAGE = 65536;
/** Initial 16 MiB; at most 1 GiB (past that, callers fall back to the unthreaded kernels). */
const INITIAL_PAGES = 256, MAXIMUM_PAGES = 16384;
/** How long a worker spins for the next request before sleeping. */
const WORKER_SPIN_MS = 2;
/** A worker that has not answered in this long is taken as dead (its part would never come). */
const ANSWER_TIMEOUT_MS = 60_000;
/** See DenseThreads.adaptive. */
const SLOW_RUNS_TO_BACK_OFF = 4;
const FIRST_BACK_OFF_PRODUCTS = 100;
const MAX_BACK_OFF_PRODUCTS = 3200;
const GOOD_RUNS_TO_FORGIVE = 16;
/** A worker that has not started in this long is taken as unable to start (the pool is not used). */
const START_TIMEOUT_MS = 10_000;
/** W and velocity copies kept: a step of two threaded layers holds 8 (W, v in; W, v out, per layer). */
const KEPT_WEIGHT_COPIES = 8;
/** Panel-packed copies of W for x·W (a train step's threaded layers, or inference's). */
const KEPT_PACKED_COPIES = 4;

interface Region { readonly offset: number; readonly floats: number }
/** An output whose copy into the tfjs heap waits: the kept region, the heap byte offset, and how to find the heap then. */
interface Deferred { readonly region: Region; readonly to: number; readonly heapNow: () => ArrayBufferLike }
interface Thread {
  readonly worker: Worker; readonly ctrl: Int32Array; readonly floats: Float32Array; seq: number;
  /** Where gather sources are posted to it (see startGather). */
  readonly sourcePort: MessagePort;
  /** The sources it holds, oldest first (weakly: dropping them is up to forgetGatherSource or the cap). */
  readonly sources: Array<{ readonly buffer: WeakRef<SharedArrayBuffer>; readonly id: number; readonly bytes: number }>;
}

/** A gather of rows into a rowsBuffer on the first kernel thread (see DenseThreads.startGather). */
export interface GatherJob {
  /** Completes it: this thread copies the rows still unclaimed while the kernel thread finishes its current one. */
  finish(): void;
}

interface GatherState {
  readonly handle: GatherJob;
  readonly thread: Thread;
  readonly source: Float32Array;
  readonly cols: number;
  readonly indices: Int32Array;
  readonly target: Float32Array;
  /** The OP_GATHER arguments (source id, source float offset, cols, indices' and target's byte offsets, rows). */
  readonly request: number[];
  /** Whether the thread is running it now (it then answers only after GATHER_STOP or the last row). */
  running: boolean;
}

/**
 * Rows [begin, end) of each part when `rows` are split into `parts`, at multiples of `align`: the
 * first part gets `firstShare` of the rows (default an equal share), the others equal shares of the rest.
 */
export function splitRows(rows: number, parts: number, align: number, firstShare = 1 / parts): Array<[number, number]> {
  const at = (share: number) => Math.min(rows, Math.round((rows * share) / align) * align);
  const bounds: number[] = [0];
  for (let t = 1; t < parts; t++) bounds.push(at(firstShare + ((1 - firstShare) * (t - 1)) / (parts - 1)));
  bounds.push(rows);
  return bounds.slice(0, parts).map((begin, t) => [begin, Math.max(begin, bounds[t + 1])]);
}

/**
 * The caller's share of x·W's rows when it also copies every part's rows of x in: its copying
 * runs while the others compute, so it takes fewer rows. With copy cost c and compute cost p per
 * row (p/c ≈ 0.07·n, measured at n = 50: 12 KB rows copy in ~1 µs, 50 outputs take ~4 µs), both
 * finish together at share p / (c + 2p) for two threads (0.44 at n = 50, → 1/2 for wide layers).
 */
export function callerShare(n: number, threads: number, copyingInput: boolean): number {
  if (!copyingInput || threads === 1) return 1 / threads;
  const ratio = 0.07 * n;
  return threads === 2 ? ratio / (1 + 2 * ratio) : 1 / threads;
}

/**
 * The caller's share of x·W's rows (`share` before this) when it will also run an idle task of
 * `idleMs` after its part (DenseThreads.idleTask: the trainer's gather of the next batch, ≈ 0.5
 * ms against ≈ 0.85 ms for the caller's half of 3072-50 x·W at batch 100 on 2026-12-01): it takes
 * fewer rows, as many fewer as the task's time would compute at `rowMs` per row, so that all
 * threads finish together. Never below 0; unchanged without a task or a measured row time.
 */
export function shareBesideIdleTask(share: number, threads: number, m: number, idleMs: number, rowMs: number): number {
  if (threads === 1 || !(idleMs > 0) || !(rowMs > 0) || m === 0) return share;
  // Caller: r·rowMs + idleMs; each other thread: (m − r)·rowMs / (threads − 1). Equal at
  // r = m/threads − idleMs·(threads − 1)/(threads·rowMs): the share drops by the second term / m.
  return Math.max(0, share - (idleMs * (threads - 1)) / (threads * rowMs * m));
}

/** Floats of W[k×n] packed in panels of 8 columns (assembly/dense.ts packPanels). */
export function packedFloats(k: number, n: number): number {
  return Math.ceil(n / 8) * 8 * k;
}

/** An exponential moving average (weight 1/4 on the new sample; the sample itself when there is no average yet). */
export function movingAverage(average: number | undefined, sample: number): number {
  return average === undefined ? sample : 0.75 * average + 0.25 * sample;
}

export class DenseThreadsError extends Error {
  override readonly name = 'DenseThreadsError';
}

export class DenseThreads {
  readonly threads: number;
  private readonly memory: SharedMemory;
  private readonly module: WasmModule;
  private readonly workerUrl: URL;
  private readonly kernels: DenseKernels;
  private readonly workers: Thread[] = [];
  private broken: string | null = null;
  /** Products run on the threads so far. */
  runs = 0;
  /**
   * For tests only: run part t alone, on its own thread (0: the caller's), after filling the
   * output regions with NaN, so what comes back shows exactly which entries that thread wrote.
   */
  probePart: number | null = null;
  /** Run once on the caller's thread after its own part of the next product, while the other threads finish theirs (see setKernelIdleTask). */
  idleTask: (() => void) | null = null;
  /** How long idle tasks took (moving average, ms), and the caller's x·W time per row by k·n (see shareBesideIdleTask). */
  private idleMs: number | undefined;
  private readonly forwardRowMs = new Map<number, number>();
  /** The caller's rows of the last x·W (tests). */
  lastForwardCallerRows = 0;
  /**
   * Back off when the threads lose: on a machine busier than its cores, the other threads may
   * not be scheduled while this one waits, and a product then takes longer than on one thread.
   * After SLOW_RUNS_TO_BACK_OFF products in a row whose wait outlasted this thread's own part
   * (past break-even: one thread alone would have been done), the next products run unthreaded
   * (the caller asks shouldBackOff), then the threads are tried again: FIRST_BACK_OFF_PRODUCTS
   * the first time, twice as many each time the threads lose again (up to MAX_BACK_OFF_PRODUCTS),
   * and the first length again once GOOD_RUNS_TO_FORGIVE products in a row did not lose. A
   * busy machine so runs unthreaded almost all the time, while a stall of a few milliseconds
   * (seen early in a process, with V8 still compiling on both cores) costs 100 products, not
   * the 2,000 a fixed length took. Results are the same bits either way; only the speed changes.
   */
  adaptive = true;
  private slowRuns = 0;
  private goodRuns = 0;
  private nextBackOff = FIRST_BACK_OFF_PRODUCTS;
  private backOffLeft = 0;
  /** Times the pool has backed off so far. */
  backOffs = 0;
  /** How long the caller waits for a thread's answer before the pool counts as broken (tests shorten it). */
  answerTimeoutMs = ANSWER_TIMEOUT_MS;
  /** How long a restart waits for each new worker to start (tests shorten it). */
  startTimeoutMs = START_TIMEOUT_MS;
  private top = 0;
  private readonly spare = new Map<number, number[]>();
  private readonly named = new Map<string, Region & { tag: object | null }>();
  /** The weight step's output regions, not yet kept (for probePart). */
  private fresh: Region[] = [];
  /** Copies of W and velocity tensors by dataId, oldest first. */
  private readonly kept = new Map<object, Region>();
  /** Weight-step outputs not yet copied into their tfjs tensors, by dataId; each is also kept (see flushDeferred). */
  private readonly deferred = new Map<object, Deferred>();
  /** Deferred copies made so far (tests check that training steps make none). */
  deferredFlushes = 0;
  /** Copies of W packed in 8-column panels (see forward), by dataId, oldest first. */
  private readonly packed = new Map<object, Region>();
  /** The buffers this memory has had (one per size: growing replaces it): rows on any of them are in the threads' memory. */
  private readonly ownBuffers = new WeakSet<object>();
  /** The gather the first kernel thread runs between products (startGather), if any. */
  private gather: GatherState | null = null;
  private nextSourceId = 1;
  /** Rows of gathers the kernel threads copied so far (the rest were copied by finish() on this thread). */
  gatheredByThreads = 0;
  /** Times the worker threads were replaced to free a large gather source (restartThreads). */
  restarts = 0;
  /** The gather sources the first kernel thread said it held after the last forgetGatherSource, and their size (tests). */
  sourcesHeld = { count: 0, kib: 0 };
  /** Regions handed out by rowsBuffer, by the array's buffer offset, until releaseRowsBuffer. */
  private readonly rowsBuffers = new Map<number, Region>();

  /** `module`: a '-shared' build of the kernels. Starts threads − 1 workers; the caller's thread is the first. */
  constructor(module: WasmModule, threads: number, workerUrl: URL) {
    this.threads = threads;
    this.module = module;
    this.workerUrl = workerUrl;
    this.memory = new WebAssemblyApi.Memory({ initial: INITIAL_PAGES, maximum: MAXIMUM_PAGES, shared: true });
    this.kernels = new WebAssemblyApi.Instance(module, { env: { memory: this.memory } }).exports as unknown as DenseKernels;
    this.ownBuffers.add(this.memory.buffer);
    this.startWorkers();
  }

  /** Starts the threads − 1 workers on this memory and waits until each is ready. */
  private startWorkers(): void {
    for (let t = 1; t < this.threads; t++) {
      const control = new SharedArrayBuffer(CONTROL_INTS * 4);
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(this.workerUrl, {
        workerData: { module: this.module, memory: this.memory, control, spinMs: WORKER_SPIN_MS, sourcePort: port2 }, transferList: [port2],
      });
      port1.unref();
      worker.unref();
      const fail = (why: string) => { this.broken ??= why; };
      worker.on('error', (error) => fail(`a kernel thread failed: ${error.message}`));
      worker.on('exit', (code) => fail(`a kernel thread exited (code ${code})`));
      this.workers.push({ worker, ctrl: new Int32Array(control), floats: new Float32Array(control), seq: 0, sourcePort: port1, sources: [] });
    }
    // A worker boots on its own thread (no event loop turn needed here), so waiting is safe; one
    // that cannot start (say, its script is missing) would otherwise be found out only by a timeout.
    for (const w of this.workers) {
      if (Atomics.wait(w.ctrl, READY, 0, this.startTimeoutMs) === 'timed-out' && Atomics.load(w.ctrl, READY) === 0) {
        for (const other of this.workers) void other.worker.terminate();
        this.workers.length = 0;
        throw new DenseThreadsError(`a kernel thread did not start within ${this.startTimeoutMs / 1000} s`);
      }
    }
  }

  /**
   * Replaces the worker threads by new ones on the same memory, to free what the old ones'
   * isolates held (see RESTART_FOR_SOURCE_BYTES); batch buffers, kept copies and deferred outputs
   * live in the memory and stay valid. The new threads are started now (≈ 50 ms here), so that
   * the next product does not wait for them. A pool that cannot start them counts as broken, and
   * a broken pool is not restarted (a hung thread would not end).
   */
  restartThreads(): void {
    this.finishGather();
    if (this.broken) return;
    for (const w of this.workers) {
      // Its exit is asked for: not a failure of the pool.
      w.worker.removeAllListeners();
      this.post(w, OP_EXIT);
    }
    this.workers.length = 0;
    this.restarts++;
    try {
      this.startWorkers();
    } catch (error) {
      this.broken = (error as Error).message;
    }
  }

  /** Why the pool cannot run (a worker failed or exited), or null. */
  get failure(): string | null {
    return this.broken;
  }

  /** Ends the worker threads, after copying every deferred output into its tensor. */
  shutdown(): void {
    this.finishGather();
    for (const dataId of [...this.deferred.keys()]) this.flushDeferred(dataId);
    for (const w of this.workers) this.post(w, OP_EXIT);
    this.broken ??= 'shut down';
    this.workers.length = 0;
  }

  /**
   * out[m×n] = x[m×k]·W[k×n] + bias, rows of x split across the threads. W is read packed in
   * panels of 8 columns (assembly/dense.ts packPanels), kept for the next product with it. The
   * copy of x is kept under the tensor's dataId or the RowsRef's tag (a plain Float32Array: not
   * kept), so the weight step of the same layer finds it.
   */
  forward(
    heap: ArrayBufferLike, x: TensorRef | RowsRef | Float32Array, w: TensorRef, bias: TensorRef | null, out: number, m: number, k: number, n: number,
  ): void {
    const rows = x instanceof Float32Array ? x : 'rows' in x ? x.rows : null;
    const tag = x instanceof Float32Array ? null : 'rows' in x ? x.tag : x.dataId;
    // Rows in a rowsBuffer are read where they are; others go to the x region (kept under the tag).
    const inPlace = rows ? this.inPlace(rows) : null;
    const xIn = inPlace === null ? this.region(`x${k}`, m * k) : null;
    const copyX = xIn !== null && (tag === null || xIn.tag !== tag);
    if (xIn) xIn.tag = null;
    const xAt = inPlace ?? xIn!.offset;
    const wIn = this.packedCopy(heap, w, k, n);
    const biasIn = bias ? this.input(heap, 'bias', bias, n, false) : null;
    const outIn = this.region('out', m * n);
    const tiles = this.tiles('tile', this.kernels.forwardTileFloats());
    const evenShare = callerShare(n, this.threads, copyX);
    const share = this.idleTask ? shareBesideIdleTask(evenShare, this.threads, m, this.idleMs ?? 0, this.forwardRowMs.get(k * n) ?? 0) : evenShare;
    const parts = splitRows(m, this.threads, 4, share);
    // Each part's rows of x are copied just before that part starts.
    const prepare = ([begin, end]: [number, number]) => {
      if (!copyX) return;
      const part = new Float32Array(this.memory.buffer, xAt + begin * k * 4, (end - begin) * k);
      part.set(rows ? rows.subarray(begin * k, end * k) : new Float32Array(heap, (x as TensorRef).offset + begin * k * 4, (end - begin) * k));
    };
    const ownMs = this.run(parts, ([begin, end], t) => [OP_FORWARD, [
      xAt + begin * k * 4, wIn.offset, biasIn ? biasIn.offset : 0, outIn.offset + begin * n * 4, tiles[t].offset, end - begin, k, n,
    ], []], { prepare, judged: share === evenShare });
    const ownRows = parts[0][1] - parts[0][0];
    this.lastForwardCallerRows = ownRows;
    if (ownRows > 0) this.forwardRowMs.set(k * n, movingAverage(this.forwardRowMs.get(k * n), ownMs / ownRows));
    if (xIn) xIn.tag = tag;
    this.copyOut(heap, outIn, out, m * n);
  }

  /**
   * The weight step of assembly/dense.ts (v given: fused momentum step into outW and outV; else
   * the gradient into outW), rows of W split across the threads. Keeps copies of the outputs.
   * With `heapNow`, the outputs are not copied into their tfjs tensors now but when first read
   * (flushDeferred; heapNow gives the tfjs heap then, which may have grown).
   */
  weightStep(
    heap: ArrayBufferLike, x: TensorRef | RowsRef, g: TensorRef, w: TensorRef, v: TensorRef | null, outW: TensorRef, outV: TensorRef | null,
    m: number, k: number, n: number, decay: number, learningRate: number, momentum: number, heapNow: (() => ArrayBufferLike) | null = null,
  ): void {
    const size = k * n;
    const xAt = 'rows' in x ? this.rowsInput(x, k, m * k) : this.input(heap, `x${k}`, x, m * k).offset;
    const gIn = this.input(heap, 'g', g, m * n, false);
    const wIn = this.keptCopy(heap, w, size);
    const vIn = v ? this.keptCopy(heap, v, size) : null;
    const outWIn = this.allocate(size);
    const outVIn = outV ? this.allocate(size) : null;
    this.fresh = outVIn ? [outWIn, outVIn] : [outWIn];
    const scratch = this.tiles('scratch', m * 16);
    const parts = splitRows(k, this.threads, 16);
    // Rows [begin, end) of outW and outV back into the tfjs outputs: this thread's own as soon as
    // they are done (the other threads may still be computing), the rest after all finished.
    const copyRowsOut = (begin: number, end: number) => {
      if (begin === end) return;
      const at = begin * n * 4;
      const floats = (end - begin) * n;
      this.copyOut(heap, { offset: outWIn.offset + at, floats }, outW.offset + at, floats);
      if (outV && outVIn) this.copyOut(heap, { offset: outVIn.offset + at, floats }, outV.offset + at, floats);
    };
    // The next x·W with the new W reads it packed (see forward): each thread's weight step writes its own rows packed too.
    const packedW = v ? this.allocate(packedFloats(k, n)) : null;
    let ownRows: [number, number] = [0, 0];
    this.run(parts, ([begin, end], t) => [OP_WEIGHT_STEP, [
      xAt, gIn.offset, wIn.offset, vIn ? vIn.offset : 0, outWIn.offset, outVIn ? outVIn.offset : 0, scratch[t].offset,
      m, k, n, v ? 1 : 0, begin, end, packedW ? packedW.offset : 0,
    ], [decay, learningRate, momentum]], heapNow ? {} : { ownDone: (part) => { ownRows = part; copyRowsOut(...part); } });
    if (heapNow) {
      this.deferred.set(outW.dataId, { region: outWIn, to: outW.offset, heapNow });
      if (outV && outVIn) this.deferred.set(outV.dataId, { region: outVIn, to: outV.offset, heapNow });
    } else {
      copyRowsOut(0, ownRows[0]);
      copyRowsOut(ownRows[1], k);
    }
    this.keep(outW.dataId, outWIn);
    if (outV && outVIn) this.keep(outV.dataId, outVIn);
    if (packedW) this.keepPacked(outW.dataId, packedW);
  }

  /**
   * Runs part t of `parts` on thread t (0: this one) and waits for all. `prepare(part)` runs just
   * before a part is started (copying in its own rows, so the other threads start sooner);
   * `ownDone(part)` right after this thread's part, while the others may still run. `judged`
   * false: the product does not count for the back-off (see adaptive). Returns how long this
   * thread's own part computed, in ms.
   */
  private run(
    parts: Array<[number, number]>, request: (part: [number, number], t: number) => [number, number[], number[]],
    hooks: { prepare?: (part: [number, number]) => void; ownDone?: (part: [number, number]) => void; judged?: boolean } = {},
  ): number {
    if (this.broken) throw new DenseThreadsError(this.broken);
    this.pauseGather();
    this.runs++;
    const asked: Thread[] = [];
    const probe = this.probePart;
    if (probe !== null) {
      for (const [t, part] of parts.entries()) if (t !== probe) part[1] = part[0];
      this.fillOutputs(request);
    }
    parts.forEach((part, t) => {
      if (t === 0 || part[0] === part[1]) return;
      hooks.prepare?.(part);
      const w = this.workers[t - 1];
      this.post(w, ...request(part, t));
      asked.push(w);
    });
    const started = performance.now();
    let ownMs = 0;
    if (parts[0][0] !== parts[0][1]) {
      hooks.prepare?.(parts[0]);
      const computing = performance.now();
      this.runHere(...request(parts[0], 0));
      ownMs = performance.now() - computing;
      hooks.ownDone?.(parts[0]);
    }
    const idle = this.idleTask;
    if (idle && asked.length > 0) {
      this.idleTask = null;
      const idleStart = performance.now();
      idle();
      this.idleMs = movingAverage(this.idleMs, performance.now() - idleStart);
    }
    const ownDone = performance.now();
    for (const w of asked) this.awaitAnswer(w);
    // A caller's part made smaller on purpose (shareBesideIdleTask) says nothing about whether the threads lose.
    if (this.adaptive && asked.length > 0 && hooks.judged !== false) this.judge(ownDone - started, performance.now() - ownDone);
    this.resumeGather();
    return ownMs;
  }

  /**
   * Starts copying rows indices[r] of `source` (`cols` floats per row, on a SharedArrayBuffer)
   * to row r of `target` (a rowsBuffer) on the first kernel thread, which runs it whenever it has
   * no part of a product: stopped before each product, resumed after it (so between a train
   * step's products it fills the time this thread spends on the small layers). Rows are claimed
   * one at a time from a shared counter, so finish() splits what is left between both threads.
   * One gather at a time: a new one finishes the last first. null when no kernel thread can
   * (one thread, a broken pool, a source not on a SharedArrayBuffer, a target not a rowsBuffer).
   * Arguments are validated by the caller (wasm-kernels.ts gatherRowsInBackground).
   */
  startGather(source: Float32Array, cols: number, indices: Int32Array, target: Float32Array): GatherJob | null {
    let thread = this.workers[0];
    const targetAt = this.inPlace(target);
    if (!thread || this.broken || targetAt === null || !(source.buffer instanceof SharedArrayBuffer)) return null;
    this.finishGather();
    if (this.dropsLargeSource(thread, source.buffer)) {
      this.restartThreads();
      thread = this.workers[0];
      if (!thread || this.broken) return null;
    }
    const id = this.gatherSourceId(thread, source.buffer);
    const rows = indices.length;
    const at = this.region('gatherIndices', rows);
    new Int32Array(this.memory.buffer, at.offset, rows).set(indices);
    Atomics.store(thread.ctrl, GATHER_NEXT, 0);
    const handle: GatherJob = { finish: () => { if (this.gather?.handle === handle) this.finishGather(); } };
    this.gather = {
      handle, thread, source, cols, indices: new Int32Array(this.memory.buffer, at.offset, rows), target,
      request: [id, source.byteOffset / 4, cols, at.offset, targetAt, rows], running: false,
    };
    this.resumeGather();
    return handle;
  }

  /**
   * Makes the kernel threads let go of a gather source now, and restarts them when it has
   * RESTART_FOR_SOURCE_BYTES or more (their isolates would hold its buffer until they collect).
   */
  forgetGatherSource(buffer: ArrayBufferLike): void {
    if (this.gather?.source.buffer === buffer) this.finishGather();
    if (this.broken) return;
    this.pauseGather();
    let held = false;
    for (const thread of this.workers) {
      const at = thread.sources.findIndex((s) => s.buffer.deref() === buffer);
      if (at < 0) continue;
      held = true;
      thread.sourcePort.postMessage({ drop: thread.sources[at].id });
      thread.sources.splice(at, 1);
      // A request of its own, so that the thread drops it now, not at its next gather.
      this.post(thread, OP_SOURCES);
      this.awaitAnswer(thread);
      this.sourcesHeld = { count: thread.ctrl[INT_ARGS], kib: thread.ctrl[INT_ARGS + 1] };
    }
    if (held && buffer.byteLength >= RESTART_FOR_SOURCE_BYTES) this.restartThreads();
    this.resumeGather();
  }

  /** Rows of the pending gather no thread has claimed yet (tests wait on it). */
  get gatherRowsLeft(): number {
    const g = this.gather;
    return g ? Math.max(0, g.indices.length - Atomics.load(g.thread.ctrl, GATHER_NEXT)) : 0;
  }
  /** The id `thread` knows `buffer` by, posting it first if new; the oldest past MAX_GATHER_SOURCES is dropped. */
  private gatherSourceId(thread: Thread, buffer: SharedArrayBuffer): number {
    const found = thread.sources.find((s) => s.buffer.deref() === buffer);
    if (found) return found.id;
    const id = this.nextSourceId++;
    // Posted before any request names it: the thread finds it queued (receiveMessageOnPort).
    thread.sourcePort.postMessage({ add: id, buffer });
    thread.sources.push({ buffer: new WeakRef(buffer), id, bytes: buffer.byteLength });
    while (thread.sources.length > MAX_GATHER_SOURCES) thread.sourcePort.postMessage({ drop: thread.sources.shift()!.id });
    return id;
  }

  /** Whether taking `buffer` would make `thread` drop (past MAX_GATHER_SOURCES) a source that only a restart frees. */
  private dropsLargeSource(thread: Thread, buffer: SharedArrayBuffer): boolean {
    if (thread.sources.some((s) => s.buffer.deref() === buffer)) return false;
    const dropped = thread.sources.slice(0, Math.max(0, thread.sources.length + 1 - MAX_GATHER_SOURCES));
    return dropped.some((s) => s.bytes >= RESTART_FOR_SOURCE_BYTES);
  }

  private resumeGather(): void {
    const g = this.gather;
    if (!g || g.running || this.broken || Atomics.load(g.thread.ctrl, GATHER_NEXT) >= g.indices.length) return;
    Atomics.store(g.thread.ctrl, GATHER_STOP, 0);
    this.post(g.thread, OP_GATHER, g.request);
    g.running = true;
  }

  /** Stops the gather's thread after its current row, so that it can take a part of a product. */
  private pauseGather(): void {
    const g = this.gather;
    if (!g?.running) return;
    Atomics.store(g.thread.ctrl, GATHER_STOP, 1);
    g.running = false;
    try {
      this.awaitAnswer(g.thread);
    } catch (error) {
      this.finishGather(true); // on this thread: the batch is whole whatever became of the thread
      throw error;
    }
  }

  /** `copyAll`: the thread failed, so every row is copied here (one of its rows may be half copied). */
  private finishGather(copyAll = false): void {
    const g = this.gather;
    if (!g) return;
    this.gather = null;
    const { thread, source, cols, indices, target } = g;
    const rows = indices.length;
    const copy = (r: number) => target.set(source.subarray(indices[r] * cols, (indices[r] + 1) * cols), r * cols);
    const copyEveryRow = () => {
      for (let r = 0; r < rows; r++) copy(r);
    };
    if (copyAll) {
      copyEveryRow();
      return;
    }
    let own = 0;
    for (let r = Atomics.add(thread.ctrl, GATHER_NEXT, 1); r < rows; r = Atomics.add(thread.ctrl, GATHER_NEXT, 1)) {
      copy(r);
      own++;
    }
    this.gatheredByThreads += Math.max(0, rows - own);
    if (!g.running) return;
    try {
      this.awaitAnswer(thread);
    } catch {
      // The thread failed (the pool is broken now, and the next product says so): its rows may be half copied.
      copyEveryRow();
    }
  }

  /** Whether the next product should run unthreaded (see adaptive); counts it if so. */
  shouldBackOff(): boolean {
    if (this.backOffLeft === 0) return false;
    this.backOffLeft--;
    return true;
  }

  private judge(ownMs: number, waitMs: number): void {
    if (waitMs > ownMs && waitMs > 0.05) {
      this.goodRuns = 0;
      if (++this.slowRuns >= SLOW_RUNS_TO_BACK_OFF) {
        this.slowRuns = 0;
        this.backOffLeft = this.nextBackOff;
        this.nextBackOff = Math.min(2 * this.nextBackOff, MAX_BACK_OFF_PRODUCTS);
        this.backOffs++;
      }
    } else {
      this.slowRuns = 0;
      if (++this.goodRuns >= GOOD_RUNS_TO_FORGIVE) this.nextBackOff = FIRST_BACK_OFF_PRODUCTS;
    }
  }

  /** Fills what the request's outputs point to (whole regions) with NaN: see probePart. */
  private fillOutputs(request: (part: [number, number], t: number) => [number, number[], number[]]): void {
    const [op, ints] = request([0, 0], 0);
    const view = new Float32Array(this.memory.buffer);
    // Output arguments: x·W's out; the weight step's new W, and its new velocity only when it has one (else that argument is 0).
    const outputs = op === OP_FORWARD ? [3] : ints[10] !== 0 ? [4, 5] : [4];
    for (const arg of outputs) {
      const region = [...this.named.values(), ...this.kept.values(), ...this.fresh].find((r) => r.offset === ints[arg]);
      if (region) view.fill(NaN, region.offset / 4, region.offset / 4 + region.floats);
    }
  }

  private runHere(op: number, ints: number[], floats: number[]): void {
    const i = (n: number) => ints[n];
    if (op === OP_FORWARD) this.kernels.denseForwardPacked(i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7));
    else {
      // With i(13) ≠ 0 the new W's rows are also written packed for the next x·W (weightStep).
      this.kernels.denseWeightStep(i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), floats[0], floats[1], floats[2], i(10), i(11), i(12), i(13));
    }
  }

  /** Writes a request (the op and its arguments) into a thread's control block and wakes it: the protocol of worker/dense-worker.mjs. */
  private post(w: Thread, op: number, ints: readonly number[] = [], floats: readonly number[] = []): void {
    w.ctrl[OP] = op;
    ints.forEach((value, i) => { w.ctrl[INT_ARGS + i] = value; });
    floats.forEach((value, i) => { w.floats[FLOAT_ARGS + i] = value; });
    Atomics.store(w.ctrl, REQUEST, ++w.seq);
    Atomics.notify(w.ctrl, REQUEST);
  }

  private awaitAnswer(w: Thread): void {
    let spins = 0;
    let deadline = 0;
    while (Atomics.load(w.ctrl, DONE) !== w.seq) {
      if ((++spins & 1023) !== 0) continue;
      const now = performance.now();
      // Pure spinning: the other thread's part takes about as long as this one's, and sleeping
      // here (Atomics.wait) costs a wake-up that was measured to double the step on this VM.
      if (deadline === 0) deadline = now + this.answerTimeoutMs;
      else if (now > deadline) {
        this.broken = `a kernel thread did not answer in ${this.answerTimeoutMs / 1000} s`;
        throw new DenseThreadsError(this.broken);
      }
    }
    if (w.ctrl[STATUS] !== 0) {
      this.broken = 'a kernel thread trapped';
      throw new DenseThreadsError(this.broken);
    }
  }

  /** A named region holding a copy of `t`; not copied again while it holds the same tensor (`reuse`). */
  private input(heap: ArrayBufferLike, name: string, t: TensorRef, floats: number, reuse = true): Region {
    const region = this.region(name, floats);
    if (!reuse || region.tag !== t.dataId) {
      this.copyIn(heap, t.offset, region, floats);
      region.tag = reuse ? t.dataId : null;
    }
    return region;
  }

  /**
   * Where the rows of `x` are in the threads' memory (a byte offset): in place for a rowsBuffer,
   * else the x region, copied in unless it holds them already (same tag).
   */
  private rowsInput(x: RowsRef, k: number, floats: number): number {
    const inPlace = this.inPlace(x.rows);
    if (inPlace !== null) return inPlace;
    const region = this.region(`x${k}`, floats);
    if (region.tag !== x.tag) {
      new Float32Array(this.memory.buffer, region.offset, floats).set(x.rows.subarray(0, floats));
      region.tag = x.tag;
    }
    return region.offset;
  }

  /** The byte offset of `rows` when they lie in this memory (a rowsBuffer or part of one), else null. */
  private inPlace(rows: Float32Array): number | null {
    return this.ownBuffers.has(rows.buffer) ? rows.byteOffset : null;
  }

  /**
   * A Float32Array of `floats` in the threads' own memory, for a training loop's batch buffers:
   * rows gathered into it are read in place by x·W and the weight step (no copy into the x region).
   * Held until releaseRowsBuffer.
   */
  rowsBuffer(floats: number): Float32Array {
    const region = this.allocate(floats);
    this.rowsBuffers.set(region.offset, region);
    return new Float32Array(this.memory.buffer, region.offset, floats);
  }

  /** Returns a rowsBuffer's memory to the pool (the array must not be used after); other arrays are ignored. */
  releaseRowsBuffer(buffer: Float32Array): void {
    const region = this.inPlace(buffer) === null ? undefined : this.rowsBuffers.get(buffer.byteOffset);
    if (!region) return;
    if (this.gather?.target.byteOffset === region.offset) this.finishGather();
    this.rowsBuffers.delete(region.offset);
    this.release(region);
  }

  /** A region for `name` of at least `floats` floats (reallocated, and its tag dropped, when too small). */
  private region(name: string, floats: number): Region & { tag: object | null } {
    let found = this.named.get(name);
    if (!found || found.floats < floats) {
      if (found) this.release(found);
      found = { ...this.allocate(floats), tag: null };
      this.named.set(name, found);
    }
    return found;
  }

  /** The kept copy of a W or velocity tensor, made now if there is none. */
  private keptCopy(heap: ArrayBufferLike, t: TensorRef, floats: number): Region {
    const found = this.kept.get(t.dataId);
    if (found && found.floats === floats) {
      this.kept.delete(t.dataId); // most recently used last
      this.kept.set(t.dataId, found);
      return found;
    }
    const region = this.allocate(floats);
    this.copyIn(heap, t.offset, region, floats);
    this.keep(t.dataId, region);
    return region;
  }

  /** One named region of `floats` per thread (index t: thread t's), for per-thread scratch. */
  private tiles(name: string, floats: number): Region[] {
    return Array.from({ length: this.threads }, (_, t) => this.region(`${name}${t}`, floats));
  }

  /** The panel-packed copy of a W tensor, made now (from the kept copy when there is one) if there is none. */
  private packedCopy(heap: ArrayBufferLike, w: TensorRef, k: number, n: number): Region {
    const found = this.packed.get(w.dataId);
    if (found) return found;
    const compact = this.kept.get(w.dataId) ?? this.input(heap, 'wCompact', w, k * n, false);
    const region = this.allocate(packedFloats(k, n));
    this.kernels.packPanels(compact.offset, region.offset, k, n, 0, k);
    this.keepPacked(w.dataId, region);
    return region;
  }

  private keepPacked(dataId: object, region: Region): void {
    this.packed.set(dataId, region);
    while (this.packed.size > KEPT_PACKED_COPIES) {
      const [oldest, oldRegion] = this.packed.entries().next().value as [object, Region];
      this.packed.delete(oldest);
      this.release(oldRegion);
    }
  }

  private keep(dataId: object, region: Region): void {
    const old = this.kept.get(dataId);
    if (old && old !== region) {
      if (this.deferred.get(dataId)?.region === old) this.flushDeferred(dataId);
      this.release(old);
    }
    this.kept.delete(dataId);
    this.kept.set(dataId, region);
    while (this.kept.size > KEPT_WEIGHT_COPIES) {
      const [oldest, oldRegion] = this.kept.entries().next().value as [object, Region];
      // A deferred output lives only here: into its tensor before the region is reused.
      this.flushDeferred(oldest);
      this.kept.delete(oldest);
      this.release(oldRegion);
    }
  }

  /** Outputs still waiting for their copy into the tfjs heap (see weightStep's heapNow). */
  get deferredCount(): number {
    return this.deferred.size;
  }

  /** Whether the tfjs tensor with this dataId still waits for its values (see weightStep's heapNow). */
  hasDeferred(dataId: object): boolean {
    return this.deferred.has(dataId);
  }

  /** Copies a deferred output into its tfjs tensor now (nothing if it has none). */
  flushDeferred(dataId: object): void {
    const entry = this.deferred.get(dataId);
    if (!entry) return;
    this.deferred.delete(dataId);
    let heap: ArrayBufferLike;
    try {
      heap = entry.heapNow();
    } catch {
      return; // its tfjs backend was disposed, and the tensor with it
    }
    this.deferredFlushes++;
    this.copyOut(heap, entry.region, entry.to, entry.region.floats);
  }

  /** Forgets a deferred output whose tensor was freed unread: its values are not needed. */
  dropDeferred(dataId: object): void {
    this.deferred.delete(dataId);
  }

  private allocate(floats: number): Region {
    const reused = this.spare.get(floats)?.pop();
    if (reused !== undefined) return { offset: reused, floats };
    // 64-byte alignment: whole cache lines per region.
    const offset = Math.ceil(this.top / 64) * 64;
    const end = offset + floats * 4;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      try {
        this.memory.grow(pages);
      } catch {
        throw new DenseThreadsError(`the threads' memory cannot grow to ${Math.ceil(end / 2 ** 20)} MiB (at most ${(MAXIMUM_PAGES * PAGE) / 2 ** 30} GiB)`);
      }
      this.ownBuffers.add(this.memory.buffer);
    }
    this.top = end;
    return { offset, floats };
  }

  private release(region: Region): void {
    const list = this.spare.get(region.floats);
    if (list) list.push(region.offset);
    else this.spare.set(region.floats, [region.offset]);
  }

  private copyIn(heap: ArrayBufferLike, from: number, region: Region, floats: number): void {
    new Float32Array(this.memory.buffer, region.offset, floats).set(new Float32Array(heap, from, floats));
  }

  private copyOut(heap: ArrayBufferLike, region: Region, to: number, floats: number): void {
    new Float32Array(heap, to, floats).set(new Float32Array(this.memory.buffer, region.offset, floats));
  }
}
