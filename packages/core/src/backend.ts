import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, CoreArgumentError, describeValue } from './errors.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  /** The backend in use. */
  readonly name: BackendName;
  readonly requested: BackendName | 'auto';
  /** Backends tried before this one, with why each failed. */
  readonly skipped: ReadonlyArray<{ readonly backend: BackendName; readonly reason: string }>;
}

let current: BackendInfo | null = null;

const loaders: Record<BackendName, () => Promise<void>> = {
  // @tensorflow/tfjs-node is optional: its install downloads libtensorflow, which fails offline,
  // leaving a package whose native binding throws on import.
  tensorflow: async () => {
    const moduleName = '@tensorflow/tfjs-node';
    await import(moduleName);
  },
  wasm: async () => {
    await import('@tensorflow/tfjs-backend-wasm');
  },
  cpu: async () => {
    await import('@tensorflow/tfjs-backend-cpu');
  },
};

async function tryBackend(name: BackendName): Promise<string | null> {
  try {
    await loaders[name]();
    if (!(await tf.setBackend(name))) return 'tf.setBackend returned false';
    await tf.ready();
    return tf.getBackend() === name ? null : `active backend is '${tf.getBackend()}'`;
  } catch (error) {
    return (error as Error).message.split('\n')[0];
  }
}

/**
 * The backend tfjs has active with an instance behind it, or null: none chosen yet, or a failed
 * switch left only its name. It may be one the caller chose with tf.setBackend, not through us.
 */
function workingBackend(): string | null {
  const engine = tf.engine();
  const name = engine.backendName;
  return name && engine.registry[name] !== undefined ? name : null;
}

/**
 * tfjs names a backend active before its initialisation runs and keeps the name when it fails
 * (with no instance behind it): after a failed switch, make the backend that was working active again.
 */
async function restoreBackend(working: string | null): Promise<void> {
  if (working === null || tf.getBackend() === working) return;
  await tf.setBackend(working).catch(() => false);
}

/**
 * Selects the TensorFlow.js backend. 'auto' (default; or env BNMLP_BACKEND) tries `tensorflow`
 * (tfjs-node, when its native library installed), then `wasm`, then `cpu`. A named backend is
 * required: BackendUnavailableError if it cannot start, and the backend active before the call
 * (if it was working) stays active. Returns what was chosen and why.
 */
export async function initBackend(requested: BackendName | 'auto' = (process.env.BNMLP_BACKEND as BackendName | undefined) ?? 'auto'): Promise<BackendInfo> {
  if (requested !== 'auto' && !BACKEND_NAMES.includes(requested))
    throw new CoreArgumentError('initBackend', 'backend', `'auto' or one of ${BACKEND_NAMES.join(', ')}`, describeValue(requested));
  if (current && (requested === 'auto' || current.name === requested) && tf.getBackend() === current.name) return current;
  const order = requested === 'auto' ? BACKEND_NAMES : [requested];
  const skipped: Array<{ backend: BackendName; reason: string }> = [];
  const working = workingBackend();
  for (const name of order) {
    const failure = await tryBackend(name);
    if (failure === null) {
      current = { name, requested, skipped };
      return current;
    }
    skipped.push({ backend: name, reason: failure });
  }
  await restoreBackend(working);
  const last = skipped[skipped.length - 1];
  throw new BackendUnavailableError(last.backend, skipped.map((s) => `${s.backend}: ${s.reason}`).join('; '));
}

/** The backend chosen by the last initBackend, or null before any. */
export function backendInfo(): BackendInfo | null {
  return current && tf.getBackend() === current.name ? current : null;
}
