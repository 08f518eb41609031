// A data helper (data-threads.ts) that claims the next block and dies before finishing it.
import { workerData } from 'node:worker_threads';

Atomics.add(workerData.control, 0, 1);
throw new Error('a data helper that crashed on purpose');
