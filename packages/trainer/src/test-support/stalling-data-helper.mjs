// A data helper (data-threads.ts) that claims the next block and never finishes it: as a helper
// that hangs or is descheduled for long. It waits in short slices so that terminate() ends it.
import { workerData } from 'node:worker_threads';

const { control } = workerData;
Atomics.add(control, 0, 1);
const idle = new Int32Array(new SharedArrayBuffer(4));
for (;;) Atomics.wait(idle, 0, 0, 100);
