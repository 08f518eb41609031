import { BACKEND_NAMES, initBackend, type BackendName } from '../backend.js';

/**
 * The backends this test run can use: cpu and wasm always (a failure to start either is a test
 * failure), tensorflow when @tensorflow/tfjs-node loaded. Each suite says which ran.
 */
export async function availableBackends(): Promise<BackendName[]> {
  const available: BackendName[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      await initBackend(name);
      available.push(name);
    } catch (error) {
      if (name !== 'tensorflow') throw error;
    }
  }
  return available;
}
