import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LayerValues } from '@bnmlp/core';
import { writeFileAtomic } from './atomic-file.js';
import { TrainerArgumentError } from './errors.js';
import type { MiniBatcherState } from './mini-batches.js';
import type { EpochRecord } from './training.js';

/*
A checkpoint holds everything a run's future depends on, so a resumed run continues to the same
bits as one never interrupted: weights and BN running averages, momentum buffers, the batcher's
order and PRNG state, the position (epoch, next step), the history so far.

File layout (version 1, little-endian; docs/run-format.md):
  8 bytes   "BNMLPCKP"
  u32       checkpoint format version (1)
  u32       header length H in bytes
  H bytes   header, UTF-8 JSON: CheckpointHeader (array table, payload sha256, position, history)
  payload   the arrays in header order, float32 or int32 each, back to back
The payload's sha256 and length are in the header, so a truncated or altered file is refused.
*/

export const CHECKPOINT_MAGIC = 'BNMLPCKP';
export const CHECKPOINT_VERSION = 1;

export interface TrainingState {
  /** Epochs completed before the current one (0-based index of the current epoch). */
  readonly epoch: number;
  /** Next step within the current epoch (0 at an epoch boundary). */
  readonly step: number;
  /** Steps taken over the whole run. */
  readonly globalStep: number;
  readonly layers: readonly LayerValues[];
  /** Momentum buffers by parameter name (W1, b1, gamma1, …). */
  readonly velocity: Readonly<Record<string, Float32Array>>;
  readonly batcher: MiniBatcherState;
  readonly history: readonly EpochRecord[];
  /** Training wall time so far, for reports (not part of the bit-identical state). */
  readonly elapsedSeconds: number;
}

export interface Checkpoint {
  /** sha256 of the run's config (canonical JSON): a checkpoint of another run is refused on resume. */
  readonly configHash: string;
  readonly state: TrainingState;
}

interface ArrayEntry {
  name: string;
  dtype: 'float32' | 'int32';
  length: number;
}

interface CheckpointHeader {
  format: 'bnmlp-checkpoint';
  version: number;
  configHash: string;
  epoch: number;
  step: number;
  globalStep: number;
  elapsedSeconds: number;
  batcher: { prngState: number; shuffles: number };
  /** Which layer arrays are present (null ones are absent from the payload). */
  layers: Array<Record<keyof LayerValues, boolean>>;
  velocityNames: string[];
  history: EpochRecord[];
  arrays: ArrayEntry[];
  payloadBytes: number;
  payloadSha256: string;
}

/** A file that is not a readable checkpoint: truncated, altered, of another format or version. */
export class CheckpointError extends TrainerArgumentError {
  override readonly name: string = 'CheckpointError';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super('readCheckpoint', 'file', 'a bnmlp checkpoint', problem);
    this.message = `${file}: not a usable bnmlp checkpoint: ${problem}`;
  }
}

const LAYER_KEYS: ReadonlyArray<keyof LayerValues> = ['W', 'b', 'gamma', 'beta', 'runningMean', 'runningVar'];

export function encodeCheckpoint(checkpoint: Checkpoint): Buffer {
  const { state } = checkpoint;
  const arrays: Array<{ entry: ArrayEntry; data: Float32Array | Int32Array }> = [];
  state.layers.forEach((layer, l) => {
    for (const key of LAYER_KEYS) {
      const values = layer[key];
      if (values) arrays.push({ entry: { name: `layers.${l}.${key}`, dtype: 'float32', length: values.length }, data: values });
    }
  });
  const velocityNames = Object.keys(state.velocity);
  for (const name of velocityNames) arrays.push({ entry: { name: `velocity.${name}`, dtype: 'float32', length: state.velocity[name].length }, data: state.velocity[name] });
  arrays.push({ entry: { name: 'batcher.order', dtype: 'int32', length: state.batcher.order.length }, data: state.batcher.order });

  const payloadBytes = arrays.reduce((sum, a) => sum + a.data.length * 4, 0);
  const payload = Buffer.alloc(payloadBytes);
  let offset = 0;
  for (const { data } of arrays) {
    // Typed arrays are little-endian on every platform Node runs on; copy the bytes as they are.
    payload.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    offset += data.byteLength;
  }
  const header: CheckpointHeader = {
    format: 'bnmlp-checkpoint',
    version: CHECKPOINT_VERSION,
    configHash: checkpoint.configHash,
    epoch: state.epoch,
    step: state.step,
    globalStep: state.globalStep,
    elapsedSeconds: state.elapsedSeconds,
    batcher: { prngState: state.batcher.prngState, shuffles: state.batcher.shuffles },
    layers: state.layers.map((layer) => Object.fromEntries(LAYER_KEYS.map((k) => [k, layer[k] !== null])) as Record<keyof LayerValues, boolean>),
    velocityNames,
    history: [...state.history],
    arrays: arrays.map((a) => a.entry),
    payloadBytes,
    payloadSha256: createHash('sha256').update(payload).digest('hex'),
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(16);
  prefix.write(CHECKPOINT_MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(CHECKPOINT_VERSION, 8);
  prefix.writeUInt32LE(headerBytes.length, 12);
  return Buffer.concat([prefix, headerBytes, payload]);
}

export function decodeCheckpoint(bytes: Uint8Array, file = '<buffer>'): Checkpoint {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 16 || buffer.toString('latin1', 0, 8) !== CHECKPOINT_MAGIC)
    throw new CheckpointError(file, buffer.length < 8 ? `only ${buffer.length} bytes` : 'it does not start with "BNMLPCKP" (another kind of file)');
  const version = buffer.readUInt32LE(8);
  if (version !== CHECKPOINT_VERSION) throw new CheckpointError(file, `format version ${version}; this bnmlp reads version ${CHECKPOINT_VERSION}`);
  const headerLength = buffer.readUInt32LE(12);
  if (16 + headerLength > buffer.length) throw new CheckpointError(file, `truncated: the header needs ${headerLength} bytes, ${buffer.length - 16} are there`);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(buffer.toString('utf8', 16, 16 + headerLength)) as CheckpointHeader;
  } catch (error) {
    throw new CheckpointError(file, `unreadable header (${(error as Error).message})`);
  }
  if (header.format !== 'bnmlp-checkpoint') throw new CheckpointError(file, `header format ${JSON.stringify(header.format)}`);
  const payload = buffer.subarray(16 + headerLength);
  if (payload.length !== header.payloadBytes) throw new CheckpointError(file, `truncated or padded: ${payload.length} payload bytes, the header says ${header.payloadBytes}`);
  const sha = createHash('sha256').update(payload).digest('hex');
  if (sha !== header.payloadSha256) throw new CheckpointError(file, 'the payload checksum does not match (the file was altered or damaged)');

  const arrays = new Map<string, Float32Array | Int32Array>();
  let offset = 0;
  for (const entry of header.arrays) {
    const byteLength = entry.length * 4;
    // Copy into a fresh, aligned buffer: the payload's offset need not be a multiple of 4.
    const copy = new Uint8Array(payload.subarray(offset, offset + byteLength));
    arrays.set(entry.name, entry.dtype === 'int32' ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer));
    offset += byteLength;
  }
  const take = <T>(name: string): T => {
    const found = arrays.get(name);
    if (!found) throw new CheckpointError(file, `array ${name} is missing`);
    return found as T;
  };
  const layers = header.layers.map((present, l) => Object.fromEntries(LAYER_KEYS.map((k) => [k, present[k] ? take<Float32Array>(`layers.${l}.${k}`) : null])) as unknown as LayerValues);
  const velocity = Object.fromEntries(header.velocityNames.map((name) => [name, take<Float32Array>(`velocity.${name}`)]));
  return {
    configHash: header.configHash,
    state: {
      epoch: header.epoch,
      step: header.step,
      globalStep: header.globalStep,
      elapsedSeconds: header.elapsedSeconds,
      layers,
      velocity,
      batcher: { order: take<Int32Array>('batcher.order'), prngState: header.batcher.prngState, shuffles: header.batcher.shuffles },
      history: header.history,
    },
  };
}

export function writeCheckpoint(path: string, checkpoint: Checkpoint): void {
  writeFileAtomic(path, encodeCheckpoint(checkpoint));
}

export function readCheckpoint(path: string): Checkpoint {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new CheckpointError(path, `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  return decodeCheckpoint(bytes, path);
}
