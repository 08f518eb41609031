// A vitest setup file for every package: after each test, one turn of the event loop.
//
// A test worker talks to vitest over an RPC whose calls time out after 60 s (birpc's default, not
// configurable). Its replies are read only when the worker's event loop runs, and consecutive
// synchronous tests (property suites, gradient checks) chain through microtasks without one. On a
// loaded 2-core CI machine a file's run of such tests outlasted the 60 s and vitest failed the run
// with "Timeout calling onTaskUpdate" although every test passed. A turn after each test bounds
// the stretch by the longest single test. Two immediates: the second is queued from inside the
// check phase, so it runs on the next iteration, after that iteration's timers and poll (I/O) phases.
import { afterEach } from 'vitest';

const immediate = () => new Promise((resolve) => setImmediate(resolve));
afterEach(async () => {
  await immediate();
  await immediate();
});
