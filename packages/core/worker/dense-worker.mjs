// A kernel thread of src/dense-threads.ts: runs its part of the threaded dense kernels on the
// shared memory, when the main thread asks. Plain JavaScript beside src/ and dist/, so the same
// file runs under the tests (TypeScript sources) and from the published package.
//
// Protocol (one Int32Array on a SharedArrayBuffer per thread; layout in src/dense-threads.ts):
// the main thread writes the op and its arguments, then bumps REQUEST and notifies; this thread
// runs the op, writes STATUS, sets DONE to the request number and notifies.
import { workerData } from 'node:worker_threads';

const REQUEST = 0, DONE = 1, OP = 2, STATUS = 3, READY = 4, INT_ARGS = 8, FLOAT_ARGS = 32;
const OP_EXIT = 0, OP_FORWARD = 1, OP_WEIGHT_STEP = 2;

const { module, memory, control, spinMs } = workerData;
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
    else throw new Error(`unknown op ${op}`);
    ctrl[STATUS] = 0;
  } catch {
    ctrl[STATUS] = 1;
  }
  Atomics.store(ctrl, DONE, seen);
  Atomics.notify(ctrl, DONE);
}
