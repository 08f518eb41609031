import { BACKEND_NAMES, initBackend, type BackendName } from '../backend.js';
import { allowRelaxedSimd, configureKernelThreads, configureWasmKernels, type WasmKernelChoice } from '../wasm-kernels.js';

/**
 * A backend as the suites run it. wasm runs four ways, because what computes the dense layers'
 * large products, BN and updates differs: our kernels built with relaxed SIMD (when this Node.js has it, after
 * allowRelaxedSimd), our kernels in plain SIMD-128, the kernels with the dense products on two
 * threads (every product, however small), and tfjs's own ops (kernels off).
 */
export type BackendSetup = 'tensorflow' | 'wasm+relaxed-simd' | 'wasm+simd128' | 'wasm+2-threads' | 'wasm+tfjs-ops' | 'cpu';

const WASM_SETUPS: ReadonlyArray<{ setup: BackendSetup; kernels: WasmKernelChoice; threads: number }> = [
  { setup: 'wasm+relaxed-simd', kernels: 'relaxed-simd', threads: 1 },
  { setup: 'wasm+simd128', kernels: 'simd128', threads: 1 },
  { setup: 'wasm+2-threads', kernels: 'auto', threads: 2 },
  { setup: 'wasm+tfjs-ops', kernels: 'off', threads: 1 },
];

function parse(setup: BackendSetup): { backend: BackendName; kernels: WasmKernelChoice; threads: number } {
  const wasm = WASM_SETUPS.find((s) => s.setup === setup);
  return wasm ? { backend: 'wasm', kernels: wasm.kernels, threads: wasm.threads } : { backend: setup as BackendName, kernels: 'auto', threads: 1 };
}

/** Starts `setup`'s backend, kernel choice and kernel threads; throws if the kernels or threads it names cannot run. */
export async function useBackend(setup: BackendSetup): Promise<void> {
  const { backend, kernels, threads } = parse(setup);
  await initBackend(backend);
  configureWasmKernels(kernels);
  // minWork 0: the suites' small shapes go through the threads too.
  // (and never backing off to one thread on a busy machine: the setup is what the suites test).
  const status = configureKernelThreads(threads, { minWork: threads > 1 ? 0 : 1 << 20, adaptive: false });
  if (kernels !== 'off' && kernels !== 'auto' && status.variant !== kernels) throw new Error(`${setup}: kernels unavailable: ${status.reason}`);
  if (status.threads !== threads) throw new Error(`${setup}: kernel threads unavailable: ${status.threadsReason}`);
}

/**
 * The setups this test run can use: cpu and every wasm setup always (a failure to start one is
 * a test failure), except relaxed SIMD where the runtime lacks it, and tensorflow when
 * @tensorflow/tfjs-node loaded. Each suite says which ran.
 */
export async function availableBackends(): Promise<BackendSetup[]> {
  const available: BackendSetup[] = [];
  const relaxed = allowRelaxedSimd();
  for (const name of BACKEND_NAMES) {
    try {
      await initBackend(name);
    } catch (error) {
      if (name !== 'tensorflow') throw error;
      continue;
    }
    if (name === 'wasm') available.push(...WASM_SETUPS.filter((s) => relaxed || s.kernels !== 'relaxed-simd').map((s) => s.setup));
    else available.push(name);
  }
  return available;
}
