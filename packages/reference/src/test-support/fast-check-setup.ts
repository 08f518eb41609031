import fc from 'fast-check';

// The one place where property-test effort is set (vitest setupFiles). FC_NUM_RUNS raises it for
// a soak run (e.g. FC_NUM_RUNS=1000); FC_SEED replays a reported failure's seed.
const DEFAULT_NUM_RUNS = 100;

function positiveIntFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, got '${raw}'`);
  return value;
}

const numRuns = positiveIntFromEnv('FC_NUM_RUNS') ?? DEFAULT_NUM_RUNS;
if (numRuns < 1) throw new Error(`FC_NUM_RUNS must be >= 1, got ${numRuns}`);
const seed = positiveIntFromEnv('FC_SEED');

fc.configureGlobal({ numRuns, ...(seed === undefined ? {} : { seed }) });
