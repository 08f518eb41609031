import fc from 'fast-check';

// numRuns is set once for the whole core suite; FC_NUM_RUNS raises it for a deeper local run.
// fast-check prints the seed and shrink path of any failure; replay with FC_SEED / FC_PATH.
const numRuns = Number(process.env.FC_NUM_RUNS ?? 12);
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
fc.configureGlobal({ numRuns, ...(seed === undefined ? {} : { seed }), ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}) });
