// A kernel thread of src/dense-threads.ts: runs its part of the threaded dense kernels on the
// shared memory, when the main thread asks. Plain JavaScript beside src/ and dist/, so the same
// file runs under the tests (TypeScript sources) and from the published package.
//
// Protocol (one Int32Array on a SharedArrayBuffer per thread; layout in src/dense-threads.ts):
// the main thread writes the op and its arguments, then bumps REQUEST and notifies; this thread
// runs the op, writes STATUS, sets DONE to the request number and notifies.
// OP_GATHER copies rows of a shared source array into the memory until GATHER_STOP is set or
// no row is left, claiming each row from GATHER_NEXT (the main thread may claim the rest).
import { receiveMessageOnPort, workerData } from 'node:worker_threads';

const REQUEST = 0, DONE = 1, OP = 2, STATUS = 3, READY = 4, GATHER_NEXT = 5, GATHER_STOP = 6, INT_ARGS = 8, FLOAT_ARGS = 32;
const OP_EXIT = 0, OP_FORWARD = 1, OP_WEIGHT_STEP = 2, OP_GATHER = 3, OP_SOURCES = 4;

const { module, memory, control, spinMs, sourcePort } = workerData;
/** Gather sources by id: SharedArrayBuffers the main thread posted on sourcePort (or told to drop). */
const sources = new Map();

/** Takes every source added or dropped since the last call (OP_SOURCES asks for it alone: a drop then frees the buffer now). */
function updateSources() {
  for (let message; (message = receiveMessageOnPort(sourcePort)); ) {
    const { add, drop, buffer } = message.message;
    if (drop !== undefined) sources.delete(drop);
    else sources.set(add, new Float32Array(buffer));
  }
}

function source(id) {
  // The main thread posts a source before the first request naming it, so it is queued by now.
  updateSources();
  const found = sources.get(id);
  if (!found) throw new Error(`no gather source ${id}`);
  return found;
}

/** Rows indices[r] of the source (cols floats each, from float `base`) to target row r, r claimed from GATHER_NEXT. */
function gather(id, base, cols, indicesAt, targetAt, rows) {
  const from = source(id);
  const heap = new Float32Array(memory.buffer);
  const indices = new Int32Array(memory.buffer, indicesAt, rows);
  const target = targetAt >> 2;
  while (Atomics.load(ctrl, GATHER_STOP) === 0) {
    const r = Atomics.add(ctrl, GATHER_NEXT, 1);
    if (r >= rows) break;
    const at = base + indices[r] * cols;
    heap.set(from.subarray(at, at + cols), target + r * cols);
  }
}
const kernels = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ctrl = new Int32Array(control);
const floats = new Float32Array(control);

/** Waits for a request after `seen`: spins for spinMs (a train step asks again within a millisecond), then sleeps. */
function nextRequest(seen) {
  let spins = 0;
  let deadline = 0;
  while (Atomics.load(ctrl, REQUEST) === seen) {
    if ((++spins & 1023) !== 0) continue;
    const now = performance.now();
    if (deadline === 0) deadline = now + spinMs;
    else if (now > deadline) Atomics.wait(ctrl, REQUEST, seen);
  }
  return Atomics.load(ctrl, REQUEST);
}

Atomics.store(ctrl, READY, 1);
Atomics.notify(ctrl, READY);

let seen = 0;
for (;;) {
  seen = nextRequest(seen);
  const op = ctrl[OP];
  if (op === OP_EXIT) break;
  const i = (n) => ctrl[INT_ARGS + n];
  const f = (n) => floats[FLOAT_ARGS + n];
  try {
    if (op === OP_FORWARD) kernels.denseForwardPacked(i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7));
    else if (op === OP_WEIGHT_STEP) {
      // i(13) ≠ 0: the new W's rows also written packed, for the next x·W (src/dense-threads.ts weightStep).
      kernels.denseWeightStep(i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), f(0), f(1), f(2), i(10), i(11), i(12), i(13));
    }
    else if (op === OP_GATHER) gather(i(0), i(1), i(2), i(3), i(4), i(5));
    else if (op === OP_SOURCES) {
      updateSources();
      // For the main thread's tests: how many sources, and their KiB (which ones).
      ctrl[INT_ARGS] = sources.size;
      ctrl[INT_ARGS + 1] = [...sources.values()].reduce((kib, s) => kib + (s.buffer.byteLength >> 10), 0);
    }
    else throw new Error(`unknown op ${op}`);
    ctrl[STATUS] = 0;
  } catch {
    ctrl[STATUS] = 1;
  }
  Atomics.store(ctrl, DONE, seen);
  Atomics.notify(ctrl, DONE);
}
