import { workerData } from 'node:worker_threads';
import { takeDataBlocks, type DataJob } from './data-threads.js';

/*
A data helper thread (data-threads.ts): takes blocks of its one job until none is left, and
ends, which lets go of the job's buffers.
*/

const { job, control } = workerData as { job: DataJob; control: Int32Array };
takeDataBlocks(job, control, true);
