import { BACKEND_NAMES, initBackend, type BackendName } from '../backend.js';
import { allowRelaxedSimd, configureWasmKernels, type WasmKernelChoice } from '../wasm-kernels.js';

/**
 * A backend as the suites run it. wasm runs three ways, because what computes the dense layers'
 * large products, BN and updates differs: our kernels built with relaxed SIMD (when this Node.js has it, after
 * allowRelaxedSimd), our kernels in plain SIMD-128, and tfjs's own ops (kernels off).
 */
export type BackendSetup = 'tensorflow' | 'wasm+relaxed-simd' | 'wasm+simd128' | 'wasm+tfjs-ops' | 'cpu';

const WASM_SETUPS: ReadonlyArray<{ setup: BackendSetup; kernels: WasmKernelChoice }> = [
  { setup: 'wasm+relaxed-simd', kernels: 'relaxed-simd' },
  { setup: 'wasm+simd128', kernels: 'simd128' },
  { setup: 'wasm+tfjs-ops', kernels: 'off' },
];

function parse(setup: BackendSetup): { backend: BackendName; kernels: WasmKernelChoice } {
  const wasm = WASM_SETUPS.find((s) => s.setup === setup);
  return wasm ? { backend: 'wasm', kernels: wasm.kernels } : { backend: setup as BackendName, kernels: 'auto' };
}

/** Starts `setup`'s backend and kernel choice; throws if the kernels it names cannot run. */
export async function useBackend(setup: BackendSetup): Promise<void> {
  const { backend, kernels } = parse(setup);
  await initBackend(backend);
  const status = configureWasmKernels(kernels);
  if (kernels !== 'off' && kernels !== 'auto' && status.variant !== kernels) throw new Error(`${setup}: kernels unavailable: ${status.reason}`);
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
