import { existsSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { Queue, QueueEvents, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { detectCifarLayout, hashCifarFiles } from './cifar-layout.js';
import { DataChecksumError } from './dataset.js';
import { TrainerArgumentError } from './errors.js';
import { canonicalJson } from './search.js';
import { parseTrainConfig, TrainConfigError, type TrainConfig, type TrainConfigInput } from './train-config.js';
import type { TrainingEvent } from './training.js';
import {
  failedTrialResult, InProcessExecutor, kernelThreadsPerProcess, LocalProcessExecutor,
  type BackendSetupOptions, type TrialExecutor, type TrialFunction, type TrialHandlers,
} from './trial-executor.js';
import type { TrialResult, TrialSpec, TrialStatus } from './trial.js';

/*
Trials on a BullMQ queue in Redis: the search's coordinator (QueueExecutor, a TrialExecutor) puts
each trial on the queue as a job whose id is derived from the trial id, and `runQueueWorker`
processes (`bnmlp worker` on any number of machines) run them. Everything that crosses Redis is
data: the job is a trial spec (validated by the config schema before anything runs), its return
value the trial's result with history, summary and final weights, so workers need no shared disk.

What makes it crash-tolerant is BullMQ's, not ours: a job is locked by the worker running it and
its lock renewed; a worker that dies (SIGKILL, a lost machine) stops renewing, and after the lock
expires another worker's stalled-job check puts the job back on the queue, where a live worker
takes it. Failed attempts are retried up to a bound, then the job is failed for good. Our part:
- job ids are derived from trial ids, and a coordinator that starts (or starts again) first looks
  for its trials' jobs: finished ones are collected, running or waiting ones awaited, only missing
  ones added; jobs are removed once their result is recorded (runSearch appends it, fsynced);
- results are reported to the search once per trial, whatever Redis redelivers;
- a periodic sweep re-adds a job Redis lost (a restart without persistence) and collects what
  finished while events were missed (a Redis restart, a coordinator that was away);
- workers run each trial in a child process (LocalProcessExecutor), so the worker's event loop
  stays free to renew locks however long a trial computes;
- a worker checks the trial's data checksums against its own files before running it; one whose
  data differs hands the job back untouched (no attempt used) and stops with a clear message;
- Redis URLs may hold a password: every message that could show one is masked.
*/

export const DEFAULT_QUEUE_NAME = 'bnmlp-trials';
/** The environment variable `bnmlp worker` (and `bnmlp search --queue env`) read the Redis URL from. */
export const REDIS_URL_ENV = 'BNMLP_REDIS_URL';
/** The BullMQ job name of a trial. */
export const TRIAL_JOB_NAME = 'trial';

const DEFAULT_ATTEMPTS = 3;
const DEFAULT_BACKOFF_MS = 2000;
const DEFAULT_POLL_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_LOCK_MS = 30_000;
const DEFAULT_MAX_STALLED = 2;
/** Finished jobs a coordinator never came back for are dropped after this long (BullMQ evicts them as other jobs finish). */
const KEEP_FINISHED_SECONDS = 7 * 24 * 3600;
/** The events stream: a completed event carries the job's return value (weights), so keep it short. */
const EVENTS_MAX_LEN = 100;
/** How often a running trial's progress (epoch ends) is published at most. */
const PROGRESS_INTERVAL_MS = 1000;
/** After an abandon, how long a worker waits for its trials to be handed back before closing by force. */
const ABANDON_GRACE_MS = 5000;

function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : typeof value === 'number' || value === null || value === undefined ? String(value) : JSON.stringify(value);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/* Redis URLs and credentials. */

/** Where a queue lives, parsed from `redis://[[user]:password@]host[:port][/db]` (or rediss:// for TLS). */
export interface RedisTarget {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username: string | null;
  readonly password: string | null;
  readonly tls: boolean;
  /** The URL with the password masked: what messages show. */
  readonly display: string;
}

const URL_FORM = 'redis://[:password@]host[:port][/db] (or rediss:// for TLS)';

/**
 * Masks the credentials of every URL in `text`: `redis://:secret@host` → `redis://:***@host`,
 * `redis://user:secret@host` → `redis://user:***@host`, `redis://secret@host` → `redis://***@host`.
 */
export function maskRedisUrl(text: string): string {
  return String(text).replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@/gi, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon < 0 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}

/** `text` with every URL's credentials and every occurrence of the given secrets (raw and URL-encoded) masked. */
export function redactSecrets(text: string, secrets: ReadonlyArray<string | null | undefined>): string {
  let out = maskRedisUrl(text);
  for (const secret of secrets) {
    if (!secret) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)])) out = out.split(form).join('***');
  }
  return out;
}

/** Parses a Redis URL; errors show it masked. `source` names it in errors ('--queue', 'BNMLP_REDIS_URL'). */
export function parseRedisUrl(text: string, source = 'url'): RedisTarget {
  const op = 'parseRedisUrl';
  if (typeof text !== 'string' || text.trim() === '') throw new TrainerArgumentError(op, source, `a Redis URL, ${URL_FORM}`, describe(text));
  const shown = maskRedisUrl(text.trim());
  const bad = (why: string) => new TrainerArgumentError(op, source, `a Redis URL, ${URL_FORM}`, `'${shown}' (${why})`);
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    // Not shown: text that is no URL cannot be masked, and may hold the password.
    throw new TrainerArgumentError(op, source, `a Redis URL, ${URL_FORM}`, `${text.trim().length} characters that are not a URL (not shown: they may hold a password)`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw bad(`the scheme is ${url.protocol.replace(/:$/, '')}, not redis`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw bad('no host');
  const port = url.port === '' ? 6379 : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad('the port is not in 1..65535');
  const path = url.pathname.replace(/^\/+/, '');
  if (path !== '' && !/^\d+$/.test(path)) throw bad(`the database must be a number, got '/${path}'`);
  const db = path === '' ? 0 : Number(path);
  if (!Number.isSafeInteger(db)) throw bad('the database number is too large');
  if (url.search !== '' || url.hash !== '') throw bad('query strings and fragments are not used');
  let username: string | null;
  let password: string | null;
  try {
    username = url.username === '' ? null : decodeURIComponent(url.username);
    password = url.password === '' ? null : decodeURIComponent(url.password);
  } catch {
    throw bad('the credentials are not valid percent-encoding');
  }
  // redis://secret@host: a lone user-info part is the password (the default user), as redis-cli reads it.
  if (password === null && username !== null) {
    password = username;
    username = null;
  }
  const display = `${url.protocol}//${password !== null ? `${username ?? ''}:***@` : username !== null ? `${username}@` : ''}${url.hostname}:${port}/${db}`;
  return { host, port, db, username, password, tls: url.protocol === 'rediss:', display };
}

/** The Redis URL to use: the given one, else $BNMLP_REDIS_URL; null when neither is set. */
export function resolveRedisUrl(given: string | null | undefined, env: Readonly<Record<string, string | undefined>> = process.env): { url: string; source: string } | null {
  if (typeof given === 'string' && given !== '') return { url: given, source: 'url' };
  const fromEnv = env[REDIS_URL_ENV];
  return fromEnv ? { url: fromEnv, source: REDIS_URL_ENV } : null;
}

function connectionOptions(target: RedisTarget, connectTimeoutMs: number) {
  return {
    host: target.host, port: target.port, db: target.db,
    ...(target.username !== null ? { username: target.username } : {}),
    ...(target.password !== null ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
    connectTimeout: connectTimeoutMs,
  };
}

/** Redis cannot be reached or refused us; the message names the server (masked) and the likely fix. */
export class QueueConnectionError extends Error {
  override readonly name = 'QueueConnectionError';
  constructor(
    /** The masked URL. */
    readonly target: string,
    readonly reason: string,
  ) {
    super(`Redis at ${target}: ${reason}`);
  }
}

function explainConnectionFailure(target: RedisTarget, error: unknown): QueueConnectionError {
  const raw = redactSecrets(errorMessage(error), [target.password, target.username]);
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  let reason: string;
  if (/WRONGPASS|invalid password|invalid username-password/i.test(raw)) reason = `refused the password in the URL (${raw.trim()}): check the password`;
  else if (/NOAUTH/i.test(raw)) reason = `requires a password (${raw.trim()}): give it in the URL, redis://:PASSWORD@host:port, or in $${REDIS_URL_ENV}`;
  else if (code === 'ECONNREFUSED' || /ECONNREFUSED/.test(raw)) reason = 'nothing answers there (connection refused): is redis-server running on that host and port?';
  else if (code === 'ENOTFOUND' || /ENOTFOUND|EAI_AGAIN/.test(raw)) reason = `the host name does not resolve (${raw.trim()})`;
  else if (code === 'ETIMEDOUT' || /ETIMEDOUT|timed? ?out/i.test(raw)) reason = `no answer in time (${raw.trim()}): a firewall, or the wrong host?`;
  else reason = `cannot connect (${raw.trim()})`;
  return new QueueConnectionError(target.display, reason);
}

/** Connects once (no retries), authenticates, and returns the server's version; a clear QueueConnectionError otherwise. */
export async function probeRedis(target: RedisTarget, connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<string> {
  const client = new Redis({ ...connectionOptions(target, connectTimeoutMs), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  let lastError: unknown = null;
  client.on('error', (error: unknown) => {
    lastError = error;
  });
  try {
    await client.connect();
    const info = await client.info('server');
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    const major = Number(version.split('.')[0]);
    if (Number.isFinite(major) && major < 5) throw new QueueConnectionError(target.display, `is Redis ${version}; BullMQ needs Redis 5 or newer (6.2+ recommended)`);
    return version;
  } catch (error) {
    if (error instanceof QueueConnectionError) throw error;
    throw explainConnectionFailure(target, lastError ?? error);
  } finally {
    client.disconnect();
  }
}

/* Data checksums: the coordinator's, recorded in every job; the worker's own, compared before a trial runs. */

const hashCache = new Map<string, { readonly bytes: number; readonly mtimeMs: number; readonly sha256: string }>();

function sha256Of(path: string): string {
  const stat = statSync(path);
  const cached = hashCache.get(path);
  if (cached && cached.bytes === stat.size && cached.mtimeMs === stat.mtimeMs) return cached.sha256;
  const [hash] = hashCifarFiles([path]);
  hashCache.set(path, { bytes: stat.size, mtimeMs: stat.mtimeMs, sha256: hash.sha256 });
  return hash.sha256;
}

/** The name a file has in data.checksums (dataset.ts: the file name without .bin or .mat). */
function checksumName(path: string): string {
  return basename(path).replace(/\.(bin|mat)$/, '');
}

const EXTENSIONS = { binary: '.bin', python: '', matlab: '.mat' } as const;

function fileByName(layout: ReturnType<typeof detectCifarLayout>, name: string): string | null {
  for (const candidate of [join(layout.dir, `${name}${EXTENSIONS[layout.format]}`), join(layout.dir, name)])
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  return null;
}

/**
 * data.checksums for a config read from `dir`: the sha256 of every file its data spec makes
 * prepareData read (the class names, the training files, validation files, test_batch when
 * data.test), by the names prepareData records. Reads only file bytes (hashing), not the data.
 */
export function dataChecksumsFor(config: TrainConfigInput | TrainConfig, dir: string): Record<string, string> {
  const op = 'dataChecksumsFor';
  const parsed = parseTrainConfig(config, `${op} config`);
  const layout = detectCifarLayout(dir);
  const named = (names: readonly string[]) =>
    names.map((name) => {
      const path = fileByName(layout, name);
      if (!path) throw new TrainerArgumentError(op, 'config.data', `files that exist in '${layout.dir}'`, `'${name}' (not found)`);
      return path;
    });
  const paths = [
    ...(layout.metaFile ? [layout.metaFile] : []),
    ...(parsed.data.trainFiles ? named(parsed.data.trainFiles) : layout.trainFiles),
    ...named(parsed.data.validationFiles),
    ...(parsed.data.test && layout.testFile ? [layout.testFile] : []),
  ];
  return Object.fromEntries(paths.map((path) => [checksumName(path), sha256Of(path)]));
}

/**
 * Checks the files in `dir` against `expected` (data.checksums) before a trial runs: throws
 * DataChecksumError naming the first file that is missing or differs. Hashes are cached by path,
 * size and modification time, so a worker hashes its data once.
 */
export function verifyDataChecksums(expected: Readonly<Record<string, string>>, dir: string): void {
  const layout = detectCifarLayout(dir);
  for (const [name, sha256] of Object.entries(expected)) {
    const path = fileByName(layout, name);
    if (!path) throw new DataChecksumError(name, sha256, null);
    const actual = sha256Of(path);
    if (actual !== sha256) throw new DataChecksumError(name, sha256, actual);
  }
}

/* Jobs. */

/** The job id of a trial: derived from the trial id (BullMQ refuses ids that are plain integers or hold ':'). */
export function jobIdOf(trialId: string): string {
  return `trial-${trialId}`;
}

/** The job payload: the trial spec, as plain JSON. */
export type TrialJobData = TrialSpec;

/** A job that is not a valid trial: failed without running anything. */
export class TrialJobError extends Error {
  override readonly name = 'TrialJobError';
  constructor(
    readonly jobId: string,
    readonly problems: readonly string[],
  ) {
    super(`job ${jobId} is not a valid trial, so it was failed without running anything: ${problems.join('; ')}`);
  }
}

const SEARCH_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
const TRIAL_ID_PATTERN = /^[0-9a-f]{16}$/;
const JOB_KEYS = ['searchId', 'trialId', 'index', 'config'];

/**
 * Validates a job's payload as a trial spec: exactly { searchId, trialId, index, config }, the
 * config by the same schema as a config file (parseTrainConfig), and the job id the one derived
 * from the trial id. Throws TrialJobError listing every problem.
 */
export function parseTrialJob(data: unknown, jobId: string): TrialSpec {
  const problems: string[] = [];
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new TrialJobError(jobId, [`the payload must be an object { ${JOB_KEYS.join(', ')} }, got ${describe(data)}`]);
  const d = data as Record<string, unknown>;
  for (const key of Object.keys(d)) if (!JOB_KEYS.includes(key)) problems.push(`unknown key '${key}'`);
  if (typeof d.searchId !== 'string' || !SEARCH_ID_PATTERN.test(d.searchId)) problems.push(`searchId must be a name of letters, digits, ., _ and -, got ${describe(d.searchId)}`);
  if (typeof d.trialId !== 'string' || !TRIAL_ID_PATTERN.test(d.trialId)) problems.push(`trialId must be 16 hex digits, got ${describe(d.trialId)}`);
  else if (jobId !== jobIdOf(d.trialId)) problems.push(`the job id must be ${jobIdOf(d.trialId)} (derived from the trial id), got ${jobId}`);
  if (typeof d.index !== 'number' || !Number.isSafeInteger(d.index) || d.index < 0) problems.push(`index must be an integer >= 0, got ${describe(d.index)}`);
  let config: TrainConfig | null = null;
  try {
    config = parseTrainConfig(d.config, 'config');
  } catch (error) {
    if (error instanceof TrainConfigError) problems.push(...error.issues.map((i) => `config${i.path ? `.${i.path}` : ''}: ${i.message}`));
    else problems.push(`config: ${errorMessage(error)}`);
  }
  if (problems.length > 0 || !config) throw new TrialJobError(jobId, problems);
  return { searchId: d.searchId as string, trialId: d.trialId as string, index: d.index as number, config };
}

/** What a worker publishes as a job's progress (BullMQ progress events reach the coordinator). */
export type TrialJobProgress =
  | { readonly kind: 'started'; readonly worker: string; readonly attempt: number }
  | { readonly kind: 'training'; readonly event: TrainingEvent }
  | { readonly kind: 'refused'; readonly worker: string; readonly message: string };

const STATUSES = new Set<TrialStatus>(['completed', 'diverged', 'failed']);

/** A job's return value as the trial's result (our own spec's ids and config); null when it is not a result. */
function resultFromReturnValue(value: unknown, trial: TrialSpec): TrialResult | null {
  if (!value || typeof value !== 'object') return null;
  const r = value as Record<string, unknown>;
  if (r.trialId !== trial.trialId || typeof r.status !== 'string' || !STATUSES.has(r.status as TrialStatus) || !Array.isArray(r.history)) return null;
  if (r.summary !== null && typeof r.summary !== 'object') return null;
  if (r.weights !== null && typeof r.weights !== 'object') return null;
  return {
    searchId: trial.searchId, trialId: trial.trialId, index: trial.index, config: trial.config,
    status: r.status as TrialStatus,
    summary: (r.summary ?? null) as TrialResult['summary'],
    history: r.history as TrialResult['history'],
    weights: (r.weights ?? null) as TrialResult['weights'],
    error: typeof r.error === 'string' ? r.error : null,
    seconds: typeof r.seconds === 'number' ? r.seconds : 0,
    worker: typeof r.worker === 'string' ? r.worker : 'queue',
  };
}

function checkTrials(op: string, trials: readonly TrialSpec[]): void {
  if (!Array.isArray(trials)) throw new TrainerArgumentError(op, 'trials', 'an array of trial specs', describe(trials));
  const ids = new Set<string>();
  trials.forEach((trial, i) => {
    if (!trial || typeof trial.trialId !== 'string' || !TRIAL_ID_PATTERN.test(trial.trialId) || typeof trial.searchId !== 'string' || !trial.config)
      throw new TrainerArgumentError(op, `trials[${i}]`, 'a trial spec { searchId, trialId (16 hex digits), index, config }', describe(trial));
    if (ids.has(trial.trialId)) throw new TrainerArgumentError(op, `trials[${i}].trialId`, 'an id not repeated in the list', `'${trial.trialId}' (repeated)`);
    ids.add(trial.trialId);
  });
}

function checkPositive(op: string, name: string, value: unknown, integer: boolean, min = 1): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isSafeInteger(value)))
    throw new TrainerArgumentError(op, `options.${name}`, integer ? `an integer >= ${min}` : `a number >= ${min}`, describe(value));
}

/** Messages of a noisy source (a connection that keeps failing), each passed on once until another one comes. */
function deduplicated(emit: (message: string) => void): (message: string) => void {
  let last: string | null = null;
  return (message) => {
    if (message === last) return;
    last = message;
    emit(message);
  };
}

/* The coordinator. */

export interface QueueExecutorOptions {
  /** redis://[[user]:password@]host[:port][/db] */
  readonly url: string;
  /** Default 'bnmlp-trials': workers serve one queue name. */
  readonly queueName?: string;
  /** Runs of a trial before it is failed for good (a crashing or failing trial; a stall also counts toward BullMQ's own bound). Default 3. */
  readonly attempts?: number;
  /** First retry delay, doubled for each further one (default 2000 ms). */
  readonly backoffMs?: number;
  /** data.checksums put into every job's config (dataChecksumsFor the coordinator's data), unless the trial's config has its own. */
  readonly dataChecksums?: Readonly<Record<string, string>> | null;
  /** How often outstanding jobs are checked besides the events (default 2000 ms). */
  readonly pollIntervalMs?: number;
  readonly connectTimeoutMs?: number;
  /** What a user should know (reattaching, no worker connected, a worker refusing a trial, Redis errors); credentials masked. */
  readonly onNote?: (message: string) => void;
}

export interface QueueStatus {
  /** The masked URL. */
  readonly url: string;
  readonly queueName: string;
  readonly redisVersion: string;
  /** Workers connected to the queue now. */
  readonly workers: number;
}

/** A trial's job already on the queue holds another payload (a search over other data, or a foreign job). */
export class QueueConflictError extends Error {
  override readonly name = 'QueueConflictError';
  constructor(
    readonly jobId: string,
    readonly reason: string,
  ) {
    super(`job ${jobId} is already on the queue with another payload (${reason}): remove it, or use another queue name`);
  }
}

/**
 * Runs trials as BullMQ jobs, on whatever `bnmlp worker` processes serve the queue. `run` resolves
 * when each trial's result has been reported; after an abort it resolves at once, leaving the jobs
 * to the workers (running the search again collects them). Call `connect()` first to fail early
 * on a wrong URL or password.
 */
export class QueueExecutor implements TrialExecutor {
  readonly name = 'queue';
  readonly queueName: string;
  private readonly target: RedisTarget;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly pollIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private readonly checksums: Readonly<Record<string, string>> | null;
  private readonly note: (message: string) => void;
  private readonly connectionNote: (message: string) => void;
  private queue: Queue | null = null;
  private events: QueueEvents | null = null;
  private status: QueueStatus | null = null;
  private connecting: Promise<QueueStatus> | null = null;
  private running = false;
  private closed = false;
  private workersSeen = 0;

  constructor(options: QueueExecutorOptions) {
    const op = 'QueueExecutor';
    if (!options || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', '{ url, … }', describe(options));
    this.target = parseRedisUrl(options.url, 'options.url');
    this.queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    if (typeof this.queueName !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(this.queueName))
      throw new TrainerArgumentError(op, 'options.queueName', 'a name of letters, digits, ., _ and -', describe(options.queueName));
    checkPositive(op, 'attempts', options.attempts, true);
    checkPositive(op, 'backoffMs', options.backoffMs, false, 0);
    checkPositive(op, 'pollIntervalMs', options.pollIntervalMs, false, 10);
    checkPositive(op, 'connectTimeoutMs', options.connectTimeoutMs, false, 1);
    if (options.dataChecksums !== undefined && options.dataChecksums !== null && (typeof options.dataChecksums !== 'object' || Array.isArray(options.dataChecksums)))
      throw new TrainerArgumentError(op, 'options.dataChecksums', 'sha256 by file name', describe(options.dataChecksums));
    this.attempts = options.attempts ?? DEFAULT_ATTEMPTS;
    this.backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    this.pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.checksums = options.dataChecksums ?? null;
    const secrets = [this.target.password, this.target.username];
    this.note = (message) => options.onNote?.(redactSecrets(message, secrets));
    this.connectionNote = deduplicated((message) => this.note(`queue ${this.queueName} at ${this.target.display}: ${message}`));
  }

  /** Workers connected to the queue when last looked (at least 1, for progress output). */
  get concurrency(): number {
    return Math.max(1, this.workersSeen);
  }

  /** The masked URL. */
  get url(): string {
    return this.target.display;
  }

  /** Connects (once): checks the URL and password, then opens the queue and its event stream. */
  connect(): Promise<QueueStatus> {
    if (this.closed) return Promise.reject(new Error('QueueExecutor: closed'));
    this.connecting ??= this.open().catch(async (error: unknown) => {
      this.connecting = null;
      await this.shut();
      throw error;
    });
    return this.connecting;
  }

  private async open(): Promise<QueueStatus> {
    const redisVersion = await probeRedis(this.target, this.connectTimeoutMs);
    const connection = connectionOptions(this.target, this.connectTimeoutMs);
    const onError = (error: unknown) => this.connectionNote(errorMessage(error));
    this.queue = new Queue(this.queueName, { connection, streams: { events: { maxLen: EVENTS_MAX_LEN } } });
    this.queue.on('error', onError);
    this.events = new QueueEvents(this.queueName, { connection });
    this.events.on('error', onError);
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady()]);
    this.workersSeen = await this.countWorkers();
    this.status = { url: this.target.display, queueName: this.queueName, redisVersion, workers: this.workersSeen };
    return this.status;
  }

  private async countWorkers(): Promise<number> {
    try {
      return await this.queue!.getWorkersCount();
    } catch {
      return this.workersSeen;
    }
  }

  private payload(trial: TrialSpec): TrialJobData {
    const config = this.checksums && !trial.config.data.checksums ? { ...trial.config, data: { ...trial.config.data, checksums: { ...this.checksums } } } : trial.config;
    return { searchId: trial.searchId, trialId: trial.trialId, index: trial.index, config };
  }

  private jobOptions(trial: TrialSpec) {
    return {
      jobId: jobIdOf(trial.trialId),
      attempts: this.attempts,
      backoff: { type: 'exponential' as const, delay: this.backoffMs },
      removeOnComplete: { age: KEEP_FINISHED_SECONDS },
      removeOnFail: { age: KEEP_FINISHED_SECONDS },
    };
  }

  async run(trials: readonly TrialSpec[], handlers: TrialHandlers, signal?: AbortSignal): Promise<void> {
    checkTrials('QueueExecutor.run', trials);
    if (!handlers || typeof handlers.onResult !== 'function') throw new TrainerArgumentError('QueueExecutor.run', 'handlers', '{ onResult, … }', describe(handlers));
    if (this.closed) throw new Error('QueueExecutor: closed');
    if (this.running) throw new Error('QueueExecutor: already running trials (one run at a time)');
    if (trials.length === 0 || signal?.aborted) return;
    this.running = true;
    try {
      await this.connect();
      await this.runConnected(trials, handlers, signal);
    } finally {
      this.running = false;
    }
  }

  private async runConnected(trials: readonly TrialSpec[], handlers: TrialHandlers, signal: AbortSignal | undefined): Promise<void> {
    const queue = this.queue!;
    const events = this.events!;
    const byJob = new Map(trials.map((t) => [jobIdOf(t.trialId), t]));
    const outstanding = new Set(byJob.keys());
    const collecting = new Set<string>();
    const refusalsNoted = new Set<string>();
    let stopped = false;
    let failure: { error: unknown } | null = null;
    let wake: () => void = () => {};
    const finished = new Promise<void>((resolve) => (wake = resolve));
    const settleIfDone = () => {
      if (outstanding.size === 0 || stopped || failure) wake();
    };
    const fail = (error: unknown) => {
      failure ??= { error };
      wake();
    };
    const onAbort = () => {
      stopped = true;
      wake();
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    // One result at a time, never after the run ended.
    let reported: Promise<void> = Promise.resolve();
    const report = (result: TrialResult): Promise<boolean> => {
      const next = reported.then(async () => {
        if (stopped || failure) return false;
        await handlers.onResult(result);
        return true;
      });
      reported = next.then(() => {}, () => {});
      return next;
    };

    const collect = async (jobId: string): Promise<void> => {
      if (!outstanding.has(jobId) || collecting.has(jobId) || stopped || failure) return;
      collecting.add(jobId);
      let result: TrialResult;
      let job: Job | undefined;
      try {
        job = await queue.getJob(jobId);
        const state = job ? await job.getState() : 'unknown';
        if (!job || (state !== 'completed' && state !== 'failed')) {
          collecting.delete(jobId);
          return;
        }
        const trial = byJob.get(jobId)!;
        if (state === 'completed') {
          result = resultFromReturnValue(job.returnvalue, trial) ?? failedTrialResult(trial, job.processedBy ?? 'queue', `the worker returned something that is not a result of trial ${trial.trialId}`, 0);
        } else {
          const seconds = job.finishedOn && job.processedOn ? Math.max(0, (job.finishedOn - job.processedOn) / 1000) : 0;
          const attempts = job.attemptsMade;
          result = failedTrialResult(trial, job.processedBy ?? 'queue', `${job.failedReason || 'failed'} (after ${attempts} attempt${attempts === 1 ? '' : 's'} on the queue)`, seconds);
        }
      } catch (error) {
        // Redis went away mid-read: the sweep tries again.
        collecting.delete(jobId);
        this.connectionNote(errorMessage(error));
        return;
      }
      let recorded: boolean;
      try {
        recorded = await report(result);
      } catch (error) {
        fail(error);
        return;
      }
      if (!recorded) {
        collecting.delete(jobId);
        return;
      }
      outstanding.delete(jobId);
      collecting.delete(jobId);
      settleIfDone();
      // The result is recorded (runSearch appended it, fsynced): the job has served its purpose.
      await job.remove().catch((error: unknown) => this.note(`job ${jobId}: recorded, but not removed from the queue (${errorMessage(error)}); it expires in ${KEEP_FINISHED_SECONDS / 86400} days`));
    };

    const onFinished = ({ jobId }: { jobId: string }) => void collect(jobId);
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => {
      const trial = outstanding.has(jobId) ? byJob.get(jobId) : undefined;
      if (!trial || stopped || !data || typeof data !== 'object') return;
      const progress = data as TrialJobProgress;
      try {
        if (progress.kind === 'started' && typeof progress.worker === 'string') handlers.onStart?.(trial, progress.worker);
        else if (progress.kind === 'training' && progress.event) handlers.onEvent?.(trial.trialId, progress.event);
        else if (progress.kind === 'refused' && typeof progress.message === 'string' && !refusalsNoted.has(`${progress.worker}\n${progress.message}`)) {
          refusalsNoted.add(`${progress.worker}\n${progress.message}`);
          this.note(`worker ${progress.worker} refused trial ${trial.trialId} and stopped: ${progress.message}`);
        }
      } catch (error) {
        fail(error);
      }
    };
    let sweepSoon: (() => void) | null = null;
    const onRemoved = ({ jobId }: { jobId: string }) => {
      if (outstanding.has(jobId) && !collecting.has(jobId)) sweepSoon?.();
    };
    events.on('completed', onFinished);
    events.on('failed', onFinished);
    events.on('progress', onProgress);
    events.on('removed', onRemoved);

    let timer: NodeJS.Timeout | null = null;
    let sweeping: Promise<void> | null = null;
    let noWorkerNoted = false;
    const lost = new Set<string>();
    // Every outstanding job: collect the finished, re-add the missing (Redis lost them), count workers.
    const sweep = async (first: boolean): Promise<void> => {
      const ids = [...outstanding].filter((id) => !collecting.has(id));
      const states = await Promise.all(ids.map(async (id) => [id, await queue.getJobState(id)] as const));
      const missing = states.filter(([, state]) => state === 'unknown').map(([id]) => byJob.get(id)!);
      const finishedIds = states.filter(([, state]) => state === 'completed' || state === 'failed').map(([id]) => id);
      if (first) {
        // Jobs already there (the search run again after its coordinator stopped): check they are ours, then collect or await them; add only the missing.
        const existing = states.filter(([, state]) => state !== 'unknown');
        await Promise.all(existing.map(([id]) => this.checkPayload(id, byJob.get(id)!)));
        if (existing.length > 0)
          this.note(`reattached to ${existing.length} of ${ids.length} trials already on queue ${this.queueName} (${finishedIds.length} finished meanwhile, ${existing.length - finishedIds.length} waiting or running): collecting them instead of enqueueing them again`);
      }
      for (const id of finishedIds) void collect(id);
      if (!first && missing.length > 0) {
        for (const trial of missing) {
          if (lost.has(trial.trialId)) continue;
          lost.add(trial.trialId);
          this.note(`trial ${trial.trialId} is no longer on queue ${this.queueName} (Redis lost it: a restart without persistence, or it was removed): enqueued again`);
        }
      }
      if (missing.length > 0 && !stopped && !failure) {
        // Ids are derived from trial ids: adding a job that is there already adds nothing.
        await queue.addBulk(missing.map((trial) => ({ name: TRIAL_JOB_NAME, data: this.payload(trial), opts: this.jobOptions(trial) })));
      }
      this.workersSeen = await this.countWorkers();
      if (this.workersSeen === 0 && outstanding.size > 0 && !noWorkerNoted) {
        noWorkerNoted = true;
        this.note(`no worker is connected to queue ${this.queueName} yet: start \`bnmlp worker --queue …\` on each machine (the trials wait on the queue)`);
      } else if (this.workersSeen > 0) noWorkerNoted = false;
    };
    const runSweep = (first = false): Promise<void> => {
      if (sweeping) return sweeping;
      sweeping = sweep(first)
        .catch((error: unknown) => {
          if (first || error instanceof QueueConflictError) throw error;
          this.connectionNote(errorMessage(error));
        })
        .finally(() => {
          sweeping = null;
        });
      return sweeping;
    };
    sweepSoon = () => setTimeout(() => void runSweep().catch(fail), 50).unref();

    try {
      await runSweep(true);
      timer = setInterval(() => void runSweep().catch(fail), this.pollIntervalMs);
      settleIfDone();
      await finished;
      // A result being recorded when the run stopped is recorded whole.
      await reported;
    } finally {
      if (timer) clearInterval(timer);
      stopped = true;
      signal?.removeEventListener('abort', onAbort);
      events.off('completed', onFinished);
      events.off('failed', onFinished);
      events.off('progress', onProgress);
      events.off('removed', onRemoved);
    }
    if (failure) throw (failure as { error: unknown }).error;
  }

  /** A job already on the queue under a trial's id must hold that trial (with our data checksums). */
  private async checkPayload(jobId: string, trial: TrialSpec): Promise<void> {
    const job = await this.queue!.getJob(jobId);
    if (!job) return;
    const theirs = job.data as TrialJobData | undefined;
    const ours = this.payload(trial);
    if (canonicalJson(theirs) === canonicalJson(ours)) return;
    const sameButData = theirs && typeof theirs === 'object' && theirs.config && canonicalJson({ ...theirs, config: { ...theirs.config, data: { ...theirs.config.data, checksums: null } } }) === canonicalJson({ ...ours, config: { ...ours.config, data: { ...ours.config.data, checksums: null } } });
    throw new QueueConflictError(jobId, sameButData ? `trial ${trial.trialId} of a search over other data: its data checksums differ from this search's` : `not trial ${trial.trialId} as this search draws it`);
  }

  private async shut(): Promise<void> {
    const events = this.events;
    const queue = this.queue;
    this.events = null;
    this.queue = null;
    await Promise.allSettled([events?.close(), queue?.close()]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.connecting?.catch(() => {});
    await this.shut();
  }
}

/* The worker. */

export type QueueWorkerEvent =
  | {
      readonly kind: 'ready'; readonly worker: string; readonly url: string; readonly queueName: string; readonly concurrency: number; readonly redisVersion: string;
      /**
       * Kernel threads each trial process is set up with ('auto': one per core); null: the trial's
       * process chooses (trials run in this process, options.runTrial, or null asked: BNMLP_THREADS, else every core).
       */
      readonly kernelThreads: number | 'auto' | null;
    }
  | { readonly kind: 'trial-start'; readonly jobId: string; readonly trial: TrialSpec; readonly attempt: number; readonly attempts: number }
  | { readonly kind: 'trial-end'; readonly jobId: string; readonly result: TrialResult; readonly attempt: number; readonly attempts: number }
  /** A malformed job: failed without running anything. */
  | { readonly kind: 'rejected'; readonly jobId: string; readonly message: string }
  /** The trial's data differs from this worker's: handed back untouched; the worker stops. */
  | { readonly kind: 'refused'; readonly jobId: string; readonly trialId: string; readonly message: string }
  /** Handed back to the queue by an abandon (or a stop after a refusal), for another worker. */
  | { readonly kind: 'abandoned'; readonly jobId: string; readonly trialId: string }
  /** This worker lost the job's lock (it was too slow to renew, or Redis was away): another worker runs it. */
  | { readonly kind: 'lost'; readonly jobId: string; readonly trialId: string }
  /** This worker's stalled-job check found a job whose worker stopped answering and put it back on the queue. */
  | { readonly kind: 'stalled'; readonly jobId: string }
  | { readonly kind: 'stopping'; readonly mode: 'graceful' | 'abandon' | 'refused' | 'broken'; readonly message: string }
  /** Redis trouble (reconnecting, …), credentials masked; repeated messages are passed on once. */
  | { readonly kind: 'connection'; readonly message: string };

export interface QueueWorkerOptions extends BackendSetupOptions {
  /** redis://[[user]:password@]host[:port][/db] */
  readonly url: string;
  readonly queueName?: string;
  /** Trials at once, each in its own child process (default 1). */
  readonly concurrency?: number;
  /** This worker's data: every trial reads it, whatever directory its config names (checked by the config's checksums). */
  readonly dataDir?: string;
  /** First stop: take no new trial, let the running ones finish, then resolve. */
  readonly signal?: AbortSignal;
  /** Second stop: abort the running trials and hand their jobs back to the queue (no attempt used), then resolve. */
  readonly abandonSignal?: AbortSignal;
  readonly onEvent?: (event: QueueWorkerEvent) => void;
  /** The lock on a running job (default 30000 ms, renewed every half): a worker silent for this long loses its trials to others. */
  readonly lockDurationMs?: number;
  /** How often this worker checks for stalled jobs (default half the lock duration). */
  readonly stalledIntervalMs?: number;
  /** Stalls a job survives before it is failed (default 2: a trial that kills its worker every time ends). */
  readonly maxStalledCount?: number;
  readonly connectTimeoutMs?: number;
  /** This worker's name in messages and job records (default host:pid). */
  readonly name?: string;
  /** Runs trials in this process with this function instead of child processes (tests). */
  readonly runTrial?: TrialFunction;
  /** For the child processes (LocalProcessExecutor): Node options and entry. */
  readonly execArgv?: readonly string[];
  readonly entry?: string;
}

export interface QueueWorkerSummary {
  /** Trials this worker ran to a result (completed or diverged). */
  readonly completed: number;
  /** Attempts that failed here (retried elsewhere, or failed for good). */
  readonly failed: number;
  /** Malformed jobs failed without running. */
  readonly rejected: number;
  /** Jobs handed back to the queue. */
  readonly abandoned: number;
  /** Why the worker stopped by itself (its data differs from a trial's, it cannot start a trial process), or null when it was asked to stop. */
  readonly stoppedBecause: string | null;
}

interface RunningTrial {
  readonly trial: TrialSpec;
  readonly controller: AbortController;
  abandoned: boolean;
  lost: boolean;
}

function waitForAbort(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * Serves the queue until stopped: takes trial jobs (at most `concurrency` at once), validates each
 * payload, checks the trial's data checksums against this worker's files, runs it in a child
 * process and returns its result (history, summary, weights) through the queue. Resolves after a
 * stop (`signal`: graceful; `abandonSignal`: hand running trials back) or when the worker stops by
 * itself (its data differs from a trial's: `stoppedBecause`). Rejects with QueueConnectionError
 * when Redis cannot be reached or refuses the credentials.
 */
export async function runQueueWorker(options: QueueWorkerOptions): Promise<QueueWorkerSummary> {
  const op = 'runQueueWorker';
  if (!options || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', '{ url, … }', describe(options));
  const target = parseRedisUrl(options.url, 'options.url');
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  if (typeof queueName !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(queueName)) throw new TrainerArgumentError(op, 'options.queueName', 'a name of letters, digits, ., _ and -', describe(options.queueName));
  checkPositive(op, 'concurrency', options.concurrency, true);
  checkPositive(op, 'lockDurationMs', options.lockDurationMs, false, 100);
  checkPositive(op, 'stalledIntervalMs', options.stalledIntervalMs, false, 50);
  checkPositive(op, 'maxStalledCount', options.maxStalledCount, true, 0);
  checkPositive(op, 'connectTimeoutMs', options.connectTimeoutMs, false, 1);
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) throw new TrainerArgumentError(op, 'options.dataDir', 'a folder path', describe(options.dataDir));
  if (options.runTrial !== undefined && typeof options.runTrial !== 'function') throw new TrainerArgumentError(op, 'options.runTrial', 'a function', describe(options.runTrial));
  const concurrency = options.concurrency ?? 1;
  const lockDuration = options.lockDurationMs ?? DEFAULT_LOCK_MS;
  const label = options.name ?? `${hostname()}:${process.pid}`;
  const secrets = [target.password, target.username];
  const emit = (event: QueueWorkerEvent) => options.onEvent?.(event);
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const connectionEvent = deduplicated((message) => emit({ kind: 'connection', message: redactSecrets(message, secrets) }));

  const redisVersion = await probeRedis(target, connectTimeoutMs);

  // One executor per slot: a child process each (the worker's event loop stays free to renew locks), or this process for tests.
  const kernelThreads = options.runTrial ? null : options.kernelThreads === undefined ? kernelThreadsPerProcess(concurrency) : options.kernelThreads;
  const makeSlot = (): TrialExecutor =>
    options.runTrial
      ? new InProcessExecutor({ runTrial: options.runTrial, dataDir: options.dataDir, worker: label })
      : new LocalProcessExecutor({
        workers: 1, dataDir: options.dataDir, backend: options.backend, wasmKernels: options.wasmKernels, relaxedSimd: options.relaxedSimd,
        kernelThreads,
        ...(options.execArgv ? { execArgv: options.execArgv } : {}), ...(options.entry ? { entry: options.entry } : {}),
      });
  const slots: TrialExecutor[] = Array.from({ length: concurrency }, makeSlot);
  const free = [...slots];
  const running = new Map<string, RunningTrial>();
  const processing = new Set<Promise<unknown>>();
  const counts = { completed: 0, failed: 0, rejected: 0, abandoned: 0 };
  let stoppedBecause: string | null = null;
  let abandoning = false;
  let requestStop: (mode: 'graceful' | 'abandon' | 'refused' | 'broken') => void = () => {};
  const stopRequested = new Promise<'graceful' | 'abandon' | 'refused' | 'broken'>((resolve) => (requestStop = resolve));
  let worker: Worker | null = null;

  const handBack = async (job: Job, token: string | undefined, trial: TrialSpec, announce = true): Promise<never> => {
    counts.abandoned++;
    if (announce) emit({ kind: 'abandoned', jobId: job.id!, trialId: trial.trialId });
    // Back to waiting at once, no attempt used; if Redis is away, the lock expires and the stalled check does the same.
    await job.moveToWait(token).catch((error: unknown) => connectionEvent(`could not hand job ${job.id} back (${errorMessage(error)}): it returns to the queue when its lock expires`));
    throw new WaitingError();
  };

  const stopBySelf = (mode: 'refused' | 'broken', message: string) => {
    if (stoppedBecause) return;
    stoppedBecause = message;
    emit({ kind: 'stopping', mode, message });
    // Closing first: no further job is taken while this one goes back.
    void worker?.close().catch(() => {});
    requestStop(mode);
  };

  const processor = async (job: Job, token?: string): Promise<TrialResult> => {
    const jobId = job.id ?? '(no id)';
    let trial: TrialSpec;
    try {
      trial = parseTrialJob(job.data, jobId);
    } catch (error) {
      counts.rejected++;
      const message = errorMessage(error);
      emit({ kind: 'rejected', jobId, message });
      throw new UnrecoverableError(message);
    }
    if (abandoning || stoppedBecause) return handBack(job, token, trial);
    // The data is this worker's own (--data), identified by the checksums, never a path from the queue.
    if (options.dataDir) trial = { ...trial, config: { ...trial.config, data: { ...trial.config.data, dir: null } } };
    const expected = trial.config.data.checksums;
    try {
      const dir = options.dataDir ?? (trial.config.data.dir && existsSync(trial.config.data.dir) ? trial.config.data.dir : undefined);
      if (!dir) throw new TrainerArgumentError(op, 'dataDir', 'a data directory (bnmlp worker --data DIR)', 'none');
      if (expected) verifyDataChecksums(expected, dir);
    } catch (error) {
      const message = errorMessage(error);
      emit({ kind: 'refused', jobId, trialId: trial.trialId, message });
      const progress: TrialJobProgress = { kind: 'refused', worker: label, message };
      await job.updateProgress(progress).catch(() => {});
      stopBySelf('refused', `worker ${label} refused trial ${trial.trialId}: ${message}`);
      return handBack(job, token, trial, false);
    }

    const slot = free.pop();
    if (!slot) throw new Error(`worker ${label}: more jobs than slots (a BullMQ concurrency bug?)`);
    const entry: RunningTrial = { trial, controller: new AbortController(), abandoned: false, lost: false };
    running.set(jobId, entry);
    const attempt = job.attemptsMade + 1;
    const attempts = job.opts.attempts ?? 1;
    emit({ kind: 'trial-start', jobId, trial, attempt, attempts });
    const started: TrialJobProgress = { kind: 'started', worker: label, attempt };
    void job.updateProgress(started).catch(() => {});
    let result: TrialResult | null = null;
    let lastProgress = -Infinity;
    try {
      await slot.run(
        [trial],
        {
          onEvent: (_, event) => {
            if (event.kind !== 'epoch-end') return;
            const now = performance.now();
            if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
            lastProgress = now;
            const progress: TrialJobProgress = { kind: 'training', event };
            void job.updateProgress(progress).catch(() => {});
          },
          onResult: (r) => {
            result = r;
          },
        },
        entry.controller.signal,
      );
    } catch (error) {
      // The slot cannot run trials (its process does not start): not the trial's fault. Hand it back and stop.
      stopBySelf('broken', `worker ${label} cannot run trials: ${errorMessage(error)}`);
      return handBack(job, token, trial, false);
    } finally {
      running.delete(jobId);
      free.push(slot);
    }
    if (!result) {
      if (entry.lost) {
        emit({ kind: 'lost', jobId, trialId: trial.trialId });
        throw new Error(`worker ${label} lost the lock on trial ${trial.trialId}: another worker runs it`);
      }
      return handBack(job, token, trial);
    }
    const outcome = result as TrialResult;
    emit({ kind: 'trial-end', jobId, result: outcome, attempt, attempts });
    if (outcome.status === 'failed') {
      counts.failed++;
      // A failed attempt: BullMQ retries it (maybe elsewhere) until the attempts are used up.
      throw new Error(outcome.error ?? `trial ${trial.trialId} failed`);
    }
    counts.completed++;
    return outcome;
  };

  worker = new Worker(
    queueName,
    (job: Job, token?: string) => {
      const task = processor(job, token);
      processing.add(task);
      const forget = () => processing.delete(task);
      task.then(forget, forget);
      return task;
    },
    {
      connection: connectionOptions(target, connectTimeoutMs),
      concurrency,
      name: label,
      lockDuration,
      stalledInterval: options.stalledIntervalMs ?? Math.max(50, Math.round(lockDuration / 2)),
      maxStalledCount: options.maxStalledCount ?? DEFAULT_MAX_STALLED,
      autorun: false,
    },
  );
  worker.on('error', (error: unknown) => connectionEvent(errorMessage(error)));
  worker.on('stalled', (jobId: string) => emit({ kind: 'stalled', jobId }));
  worker.on('lockRenewalFailed', (jobIds: string[]) => {
    for (const id of jobIds) {
      const entry = running.get(id);
      if (!entry) continue;
      entry.lost = true;
      entry.controller.abort();
    }
  });

  const onGraceful = () => requestStop('graceful');
  const onAbandon = () => requestStop('abandon');
  options.signal?.addEventListener('abort', onGraceful, { once: true });
  options.abandonSignal?.addEventListener('abort', onAbandon, { once: true });
  if (options.abandonSignal?.aborted) requestStop('abandon');
  else if (options.signal?.aborted) requestStop('graceful');

  try {
    try {
      await worker.waitUntilReady();
    } catch (error) {
      throw explainConnectionFailure(target, error);
    }
    const runLoop = worker.run().catch((error: unknown) => connectionEvent(errorMessage(error)));
    emit({ kind: 'ready', worker: label, url: target.display, queueName, concurrency, redisVersion, kernelThreads });

    const abandon = () => {
      abandoning = true;
      for (const entry of running.values()) {
        entry.abandoned = true;
        entry.controller.abort();
      }
    };
    const mode = await stopRequested;
    if (mode === 'graceful') {
      emit({ kind: 'stopping', mode, message: `worker ${label}: finishing ${running.size} running trial${running.size === 1 ? '' : 's'}, taking no new one` });
      // A later abandon aborts what still runs: the graceful close then completes as soon as those jobs are handed back.
      const closing = worker.close();
      await Promise.race([closing, waitForAbort(options.abandonSignal)]);
      if (options.abandonSignal?.aborted) {
        emit({ kind: 'stopping', mode: 'abandon', message: `worker ${label}: handing ${running.size} running trial${running.size === 1 ? '' : 's'} back to the queue` });
        abandon();
        await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, ABANDON_GRACE_MS).unref())]);
        await worker.close(true);
      } else await closing;
    } else if (mode === 'abandon') {
      emit({ kind: 'stopping', mode, message: `worker ${label}: handing ${running.size} running trial${running.size === 1 ? '' : 's'} back to the queue` });
      abandon();
      // Each processor moves its job back before it returns; then close (by force if Redis does not answer).
      await Promise.race([Promise.allSettled([...processing]), new Promise((resolve) => setTimeout(resolve, ABANDON_GRACE_MS).unref())]);
      await worker.close(true);
    } else {
      // Stopped by itself: the refusing processor already asked for a close; the other trials finish.
      const closing = worker.close();
      await Promise.race([closing, waitForAbort(options.abandonSignal)]);
      if (options.abandonSignal?.aborted) {
        abandon();
        await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, ABANDON_GRACE_MS).unref())]);
        await worker.close(true);
      } else await closing;
    }
    await runLoop;
  } finally {
    options.signal?.removeEventListener('abort', onGraceful);
    options.abandonSignal?.removeEventListener('abort', onAbandon);
    await worker.close(true).catch(() => {});
    await Promise.allSettled(slots.map((slot) => slot.close()));
  }
  return { ...counts, stoppedBecause };
}
