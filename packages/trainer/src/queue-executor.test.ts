import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, type WeightsFile } from '@bnmlp/core';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  dataChecksumsFor, DEFAULT_QUEUE_NAME, jobIdOf, maskRedisUrl, parseRedisUrl, parseTrialJob, QueueConflictError, QueueConnectionError, QueueExecutor,
  redactSecrets, resolveRedisUrl, runQueueWorker, TrialJobError, verifyDataChecksums, type QueueWorkerEvent, type QueueWorkerOptions, type QueueWorkerSummary,
} from './queue-executor.js';
import { drawTrials, readSearchResults, runSearch, type SearchOutcome, type SearchSpec } from './search.js';
import type { TrainConfigInput } from './train-config.js';
import type { RunSummary } from './training.js';
import { InProcessExecutor } from './trial-executor.js';
import { runTrial, TrialAbortedError, type RunTrialOptions, type TrialResult, type TrialSpec } from './trial.js';
import { freePort, REDIS_MISSING_MESSAGE, redisServerAvailable, startRedisServer, type RedisServer } from './test-support/redis-server.js';
import { tinyCifarDir } from './test-support/paths.js';

/*
QueueExecutor and runQueueWorker against a real redis-server (started here on a free loopback
port, with a password and appendonly persistence). Workers run in this process with a fake trial
function (fast, and it counts how often each trial ran), except where real training is compared
with a local search. Every guarantee of the queue has a test here; the CLI's e2e test repeats the
important ones with real `bnmlp worker` processes (SIGKILL included).
*/

const PASSWORD = 'queue-test-secret-5ac1d';
const available = redisServerAvailable();
if (!available) console.warn(REDIS_MISSING_MESSAGE);

let redis: RedisServer;
let tmp: string;
/** Every message the code under test produced: none may show the password. */
const messages: string[] = [];
let queueCounter = 0;

beforeAll(async () => {
  if (!available) return;
  redis = await startRedisServer({ password: PASSWORD, appendonly: true });
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-queue-'));
  await initBackend('cpu');
});
afterAll(async () => {
  await redis?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/* Everything a test starts is stopped after it, even when it fails. */
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

function newQueueName(): string {
  return `test-${process.pid}-${++queueCounter}`;
}

const base: TrainConfigInput = { network: { hiddenDims: [8] }, optimizer: { learningRate: 0.01 }, epochs: 3, batchSize: 10, seed: 5, data: { dims: 50, validationCount: 10 } };

function spec(trials: number, seed = 3, stage = 'queue'): SearchSpec {
  return { stage, baseConfig: base, ranges: { learningRate: { min: 1e-3, max: 1e-1 }, lambda: { min: 1e-5, max: 1e-2 } }, trials, seed };
}

type Behaviour = { kind: 'ok'; ms?: number } | { kind: 'throw'; message: string; ms?: number } | { kind: 'diverge' } | { kind: 'hang' };

/** A fake trial function: what each trial does (by index), and how often each ran. */
function fakeTrials(behaviour: (trial: TrialSpec) => Behaviour = () => ({ kind: 'ok' })) {
  const calls = new Map<string, number>();
  const started: string[] = [];
  const fn = async (trial: TrialSpec, options: RunTrialOptions): Promise<TrialResult> => {
    calls.set(trial.trialId, (calls.get(trial.trialId) ?? 0) + 1);
    started.push(trial.trialId);
    const b = behaviour(trial);
    const sleep = (ms: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms);
        options.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(new TrialAbortedError(trial.trialId));
        }, { once: true });
      });
    if (b.kind === 'hang') await sleep(600_000);
    if ((b.kind === 'ok' || b.kind === 'throw') && b.ms) await sleep(b.ms);
    if (b.kind === 'throw') throw new Error(b.message);
    const accuracy = 0.1 + trial.index / 100;
    const summary = { status: b.kind === 'diverge' ? 'diverged' : 'completed', epochs: 1, train: { accuracy, loss: 1, cost: 1 }, validation: { accuracy, loss: 1, cost: 1 }, divergence: b.kind === 'diverge' ? { message: 'the cost is NaN at epoch 1' } : null } as unknown as RunSummary;
    return {
      searchId: trial.searchId, trialId: trial.trialId, index: trial.index, status: b.kind === 'diverge' ? 'diverged' : 'completed', config: trial.config,
      summary, history: [], weights: b.kind === 'diverge' ? null : ({ fake: true, trialId: trial.trialId } as unknown as WeightsFile),
      error: b.kind === 'diverge' ? 'the cost is NaN at epoch 1' : null, seconds: 0.01, worker: options.worker ?? 'local',
    };
  };
  return { fn, calls, started };
}

interface WorkerHandle {
  readonly events: QueueWorkerEvent[];
  readonly done: Promise<QueueWorkerSummary>;
  readonly stop: AbortController;
  readonly abandon: AbortController;
  /** Resolves with the first event matching. */
  readonly when: (match: (event: QueueWorkerEvent) => boolean, timeoutMs?: number) => Promise<QueueWorkerEvent>;
}

function startWorker(queueName: string, options: Partial<QueueWorkerOptions> = {}): WorkerHandle {
  const events: QueueWorkerEvent[] = [];
  const waiters: Array<{ match: (e: QueueWorkerEvent) => boolean; resolve: (e: QueueWorkerEvent) => void }> = [];
  const stop = new AbortController();
  const abandon = new AbortController();
  const done = runQueueWorker({
    url: redis.url, queueName, concurrency: 1, dataDir: tinyCifarDir, signal: stop.signal, abandonSignal: abandon.signal,
    lockDurationMs: 2000, stalledIntervalMs: 300, ...options,
    onEvent: (event) => {
      events.push(event);
      messages.push(JSON.stringify(event));
      for (const w of [...waiters]) if (w.match(event)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(event);
      }
    },
  });
  done.catch(() => {});
  cleanups.push(async () => {
    abandon.abort();
    await done.catch(() => {});
  });
  const when = (match: (e: QueueWorkerEvent) => boolean, timeoutMs = 20_000) => {
    const seen = events.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<QueueWorkerEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching worker event within ${timeoutMs} ms; got ${events.map((e) => e.kind).join(', ')}`)), timeoutMs);
      waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  };
  return { events, done, stop, abandon, when };
}

function coordinator(queueName: string, extra: Partial<ConstructorParameters<typeof QueueExecutor>[0]> = {}) {
  const notes: string[] = [];
  const executor = new QueueExecutor({ url: redis.url, queueName, pollIntervalMs: 200, backoffMs: 20, onNote: (m) => (notes.push(m), messages.push(m)), ...extra });
  cleanups.push(() => executor.close());
  return { executor, notes };
}

function rawQueue(queueName: string): Queue {
  const queue = new Queue(queueName, { connection: { host: redis.host, port: redis.port, password: PASSWORD } });
  cleanups.push(() => queue.close());
  return queue;
}

/** Job ids added to a queue while it is watched. */
async function watchAdded(queueName: string): Promise<string[]> {
  const events = new QueueEvents(queueName, { connection: { host: redis.host, port: redis.port, password: PASSWORD } });
  cleanups.push(() => events.close());
  const added: string[] = [];
  events.on('added', ({ jobId }) => added.push(jobId));
  await events.waitUntilReady();
  return added;
}

async function until(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function recordedIds(path: string): string[] {
  return readSearchResults(path).records.map((r) => r.trialId);
}

async function emptyQueue(queueName: string): Promise<void> {
  const counts = await rawQueue(queueName).getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
  expect(counts).toEqual({ waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, prioritized: 0 });
}

describe('Redis URLs and credentials', () => {
  it('parses redis://[[user]:password@]host[:port][/db], with defaults', () => {
    expect(parseRedisUrl('redis://127.0.0.1')).toEqual({ host: '127.0.0.1', port: 6379, db: 0, username: null, password: null, tls: false, display: 'redis://127.0.0.1:6379/0' });
    expect(parseRedisUrl('redis://:p%40ss@redis.lan:6380/2')).toEqual({ host: 'redis.lan', port: 6380, db: 2, username: null, password: 'p@ss', tls: false, display: 'redis://:***@redis.lan:6380/2' });
    expect(parseRedisUrl('rediss://alice:pw@[::1]:7000')).toMatchObject({ host: '::1', port: 7000, username: 'alice', password: 'pw', tls: true, display: 'rediss://alice:***@[::1]:7000/0' });
    // A lone user-info part is the password of the default user, as redis-cli reads it.
    expect(parseRedisUrl('redis://secret@h')).toMatchObject({ username: null, password: 'secret', display: 'redis://:***@h:6379/0' });
  });

  it.each([
    ['http://:hunter2@h:1', /scheme is http/],
    ['redis://:hunter2@h:1/x', /database must be a number/],
    ['redis://:hunter2@h:1/0?tls=1', /query strings/],
    ['redis://:hunter2@:1', /not a URL|no host/],
    ['not a url hunter2', /characters that are not a URL \(not shown/],
  ])('refuses %s with a message that does not show the password', (url, why) => {
    let message = '';
    try {
      parseRedisUrl(url, '--queue');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(why);
    expect(message).toMatch(/--queue/);
    expect(message).not.toContain('hunter2');
  });

  it('masks credentials in any text, and secrets wherever they appear', () => {
    expect(maskRedisUrl('try redis://:pw@h:1/0 or redis://bob:pw2@h or rediss://tok@h')).toBe('try redis://:***@h:1/0 or redis://bob:***@h or rediss://***@h');
    expect(redactSecrets('AUTH failed for p@ss and p%40ss', ['p@ss'])).toBe('AUTH failed for *** and ***');
    expect(resolveRedisUrl(null, { BNMLP_REDIS_URL: 'redis://h' })).toEqual({ url: 'redis://h', source: 'BNMLP_REDIS_URL' });
    expect(resolveRedisUrl('redis://given', { BNMLP_REDIS_URL: 'redis://h' })).toEqual({ url: 'redis://given', source: 'url' });
    expect(resolveRedisUrl(undefined, {})).toBeNull();
  });
});

describe('job payloads', () => {
  const trial = drawTrials(spec(1))[0];
  it('a trial spec passes, and is the same data after a JSON round trip', () => {
    const data = JSON.parse(JSON.stringify(trial));
    expect(parseTrialJob(data, jobIdOf(trial.trialId))).toEqual(trial);
  });

  it('anything else is refused with every problem named', () => {
    const bad = { ...trial, config: { ...trial.config, optimizer: { learningRate: -1 }, network: { hiddenDims: [5000] } }, shell: 'rm -rf /' };
    expect(() => parseTrialJob(bad, jobIdOf(trial.trialId))).toThrow(TrialJobError);
    expect(() => parseTrialJob(bad, jobIdOf(trial.trialId))).toThrow(/not a valid trial, so it was failed without running anything: unknown key 'shell'; .*config\.optimizer\.learningRate/);
    expect(() => parseTrialJob(trial, 'trial-0000000000000000')).toThrow(/job id must be trial-/);
    expect(() => parseTrialJob('run me', 'x')).toThrow(/payload must be an object/);
  });
});

describe('data checksums', () => {
  it('records the files a config reads, and a worker refuses a copy that differs', () => {
    const checksums = dataChecksumsFor(base, tinyCifarDir);
    expect(Object.keys(checksums).sort()).toEqual(['batches.meta.txt', 'data_batch_1', 'test_batch']);
    expect(() => verifyDataChecksums(checksums, tinyCifarDir)).not.toThrow();
    const copy = join(mkdtempSync(join(tmpdir(), 'bnmlp-queue-data-')), 'cifar');
    mkdirSync(copy);
    for (const file of readdirSync(tinyCifarDir)) copyFileSync(join(tinyCifarDir, file), join(copy, file));
    const bytes = readFileSync(join(copy, 'data_batch_1.bin'));
    bytes[100] ^= 0xff;
    writeFileSync(join(copy, 'data_batch_1.bin'), bytes);
    expect(() => verifyDataChecksums(checksums, copy)).toThrow(/data file data_batch_1 differs from the one this config was made with .*point --data at the same copy/);
    rmSync(copy, { recursive: true, force: true });
  });
});

describe.skipIf(!available)('QueueExecutor and runQueueWorker on a real redis-server', () => {
  it('runs every trial exactly once on two workers; results and weights come back through the queue, which is left empty', async () => {
    const queueName = newQueueName();
    const fake = fakeTrials(() => ({ kind: 'ok', ms: 30 }));
    startWorker(queueName, { runTrial: fake.fn, name: 'w1' });
    startWorker(queueName, { runTrial: fake.fn, name: 'w2' });
    const { executor } = coordinator(queueName);
    const status = await executor.connect();
    expect(status).toMatchObject({ queueName, url: `redis://:***@127.0.0.1:${redis.port}/0` });
    const dir = join(tmp, queueName);
    const starts: string[] = [];
    const outcome = await runSearch(spec(6), { executor, resultsPath: join(dir, 'results.jsonl'), weightsDir: join(dir, 'weights'), onEvent: (e) => e.kind === 'trial-start' && starts.push(e.worker) });
    expect(outcome.results).toHaveLength(6);
    expect(outcome.notes).toEqual([]);
    const ids = recordedIds(join(dir, 'results.jsonl'));
    expect(new Set(ids).size).toBe(6);
    expect(ids).toHaveLength(6);
    for (const id of ids) expect(fake.calls.get(id)).toBe(1);
    // The weights were written by the coordinator from the jobs' return values: no shared disk.
    for (const id of ids) expect(JSON.parse(readFileSync(join(dir, 'weights', `${id}.json`), 'utf8'))).toEqual({ fake: true, trialId: id });
    expect(new Set(starts)).toEqual(new Set(['w1', 'w2']));
    // Records hold the search's own configs (no checksums were asked for here).
    expect(outcome.results.map((r) => r.config)).toEqual(drawTrials(spec(6)).map((t) => t.config));
    await emptyQueue(queueName);
  });

  it('gives the same results as a local search on the same data (real training), with the data checksums in every job', async () => {
    const queueName = newQueueName();
    const trials = spec(3, 11, 'same');
    const local = await runSearch(trials, { executor: new InProcessExecutor({ dataDir: tinyCifarDir }), resultsPath: join(tmp, queueName, 'local.jsonl') });
    const checksums = dataChecksumsFor(base, tinyCifarDir);
    const { executor } = coordinator(queueName, { dataChecksums: checksums });
    const search = runSearch(trials, { executor, resultsPath: join(tmp, queueName, 'queue.jsonl'), weightsDir: join(tmp, queueName, 'weights') });
    const queue = rawQueue(queueName);
    const first = drawTrials(trials)[0];
    await until(async () => (await queue.getJob(jobIdOf(first.trialId))) !== undefined, 'the first job');
    const job = await queue.getJob(jobIdOf(first.trialId));
    expect(job!.data).toEqual(JSON.parse(JSON.stringify({ ...first, config: { ...first.config, data: { ...first.config.data, checksums } } })));
    startWorker(queueName, { runTrial });
    const queued: SearchOutcome = await search;
    const strip = (r: TrialResult | SearchOutcome['results'][number]) => ({ ...r, seconds: 0, worker: '', summary: r.summary && { ...r.summary, seconds: 0 }, history: r.history.map((h) => ({ ...h, seconds: 0, stepSeconds: 0 })) });
    expect(queued.results.map(strip)).toEqual(local.results.map(strip));
    expect(queued.rows.map((r) => [r.trialId, r.validationAccuracy, r.trainAccuracy])).toEqual(local.rows.map((r) => [r.trialId, r.validationAccuracy, r.trainAccuracy]));
    expect(readdirSync(join(tmp, queueName, 'weights'))).toHaveLength(3);
  });

  it('running the same search again enqueues only what the results file lacks', async () => {
    const queueName = newQueueName();
    const fake = fakeTrials();
    startWorker(queueName, { runTrial: fake.fn });
    const results = join(tmp, queueName, 'results.jsonl');
    await runSearch(spec(5), { executor: coordinator(queueName).executor, resultsPath: results });
    // Keep the first 3 lines: the other 2 trials "never ended".
    const lines = readFileSync(results, 'utf8').split('\n').filter(Boolean);
    writeFileSync(results, `${lines.slice(0, 3).join('\n')}\n`);
    const added = await watchAdded(queueName);
    const again = await runSearch(spec(5), { executor: coordinator(queueName).executor, resultsPath: results });
    expect(again.ran).toBe(2);
    const missing = lines.slice(3).map((l) => JSON.parse(l).trialId as string);
    await until(() => added.length >= 2, 'added events');
    expect(added.sort()).toEqual(missing.map(jobIdOf).sort());
    expect(recordedIds(results).sort()).toEqual(lines.map((l) => JSON.parse(l).trialId).sort());
    for (const [id, n] of fake.calls) expect(n, id).toBe(missing.includes(id) ? 2 : 1);
    // Nothing missing: nothing is enqueued and the executor is not even asked.
    const third = await runSearch(spec(5), { executor: coordinator(queueName).executor, resultsPath: results });
    expect([third.ran, added.length]).toEqual([0, 2]);
  });

  it('a restarted coordinator reattaches: it collects what finished meanwhile (completed or failed) and awaits what runs, adding and rerunning nothing', async () => {
    const queueName = newQueueName();
    const trials = drawTrials(spec(5));
    const slow = trials[4].trialId;
    const poison = trials[3].trialId;
    const fake = fakeTrials((t) => (t.trialId === poison ? { kind: 'throw', message: 'segfault (simulated)', ms: 300 } : { kind: 'ok', ms: t.trialId === slow ? 2500 : 100 }));
    startWorker(queueName, { runTrial: fake.fn });
    startWorker(queueName, { runTrial: fake.fn });
    const results = join(tmp, queueName, 'results.jsonl');
    const stop = new AbortController();
    const first = await runSearch(spec(5), {
      executor: coordinator(queueName, { attempts: 2 }).executor, resultsPath: results, signal: stop.signal,
      onEvent: (e) => e.kind === 'trial-end' && stop.abort(),
    });
    expect(first.aborted).toBe(true);
    expect(first.results).toHaveLength(1);
    // While no coordinator runs, the workers go on.
    const queue = rawQueue(queueName);
    await until(async () => {
      const counts = await queue.getJobCounts('completed', 'failed');
      return counts.completed === 2 && counts.failed === 1;
    }, 'two trials completed and one failed for good without a coordinator');
    expect(await queue.getJobState(jobIdOf(slow))).toBe('active');
    const added = await watchAdded(queueName);
    const { executor, notes } = coordinator(queueName, { attempts: 2 });
    const second = await runSearch(spec(5), { executor, resultsPath: results });
    expect(second.aborted).toBe(false);
    expect(second.ran).toBe(4);
    expect(notes.join('\n')).toMatch(/reattached to 4 of 4 trials already on queue .* \(3 finished meanwhile, 1 waiting or running\)/);
    expect(added).toEqual([]);
    expect(recordedIds(results).sort()).toEqual(trials.map((t) => t.trialId).sort());
    for (const t of trials) expect(fake.calls.get(t.trialId), t.trialId).toBe(t.trialId === poison ? 2 : 1);
    expect(second.results.find((r) => r.trialId === poison)).toMatchObject({ status: 'failed', error: expect.stringMatching(/segfault \(simulated\).*after 2 attempts/) });
    await emptyQueue(queueName);
  });

  it('a job of the same trial from a search over other data is a conflict, not a result', async () => {
    const queueName = newQueueName();
    const stop = new AbortController();
    const other = { 'data_batch_1': 'a'.repeat(64) };
    const noWorkers = runSearch(spec(2), { executor: coordinator(queueName, { dataChecksums: other }).executor, resultsPath: join(tmp, queueName, 'a.jsonl'), signal: stop.signal });
    const queue = rawQueue(queueName);
    await until(async () => (await queue.getJobCounts('waiting')).waiting === 2, 'two waiting jobs');
    stop.abort();
    await noWorkers;
    const ours = runSearch(spec(2), { executor: coordinator(queueName, { dataChecksums: dataChecksumsFor(base, tinyCifarDir) }).executor, resultsPath: join(tmp, queueName, 'b.jsonl') });
    await expect(ours).rejects.toThrow(QueueConflictError);
    await expect(ours).rejects.toThrow(/search over other data: its data checksums differ/);
  });

  it('a failing trial is retried a bounded number of times, then recorded as failed with its error; a diverged one is recorded with its error; the search goes on', async () => {
    const queueName = newQueueName();
    const trials = drawTrials(spec(4));
    const fake = fakeTrials((t) => (t.index === 0 ? { kind: 'throw', message: 'out of memory (simulated)' } : t.index === 1 ? { kind: 'diverge' } : { kind: 'ok' }));
    startWorker(queueName, { runTrial: fake.fn });
    const outcome = await runSearch(spec(4), { executor: coordinator(queueName, { attempts: 2 }).executor, resultsPath: join(tmp, queueName, 'results.jsonl') });
    const byIndex = new Map(outcome.results.map((r) => [r.index, r]));
    expect(byIndex.get(0)).toMatchObject({ status: 'failed', summary: null });
    expect(byIndex.get(0)!.error).toMatch(/out of memory \(simulated\).*\(after 2 attempts on the queue\)/);
    expect(fake.calls.get(trials[0].trialId)).toBe(2);
    expect(byIndex.get(1)).toMatchObject({ status: 'diverged', error: 'the cost is NaN at epoch 1' });
    expect(fake.calls.get(trials[1].trialId)).toBe(1);
    expect([byIndex.get(2)!.status, byIndex.get(3)!.status]).toEqual(['completed', 'completed']);
    await emptyQueue(queueName);
  });

  it('a malformed job is failed at once with a clear error and never run', async () => {
    const queueName = newQueueName();
    const fake = fakeTrials();
    const worker = startWorker(queueName, { runTrial: fake.fn });
    const queue = rawQueue(queueName);
    const trial = drawTrials(spec(1))[0];
    const jobId = jobIdOf(trial.trialId);
    await queue.add('trial', { ...trial, config: { ...trial.config, optimizer: { learningRate: -1 }, network: { hiddenDims: [5000] } }, shell: 'rm -rf /' }, { jobId, attempts: 3 });
    await queue.add('trial', 'run me' as unknown as object, { jobId: 'not-a-trial', attempts: 3 });
    await worker.when((e) => e.kind === 'rejected' && e.jobId === 'not-a-trial');
    await until(async () => (await queue.getJobState(jobId)) === 'failed' && (await queue.getJobState('not-a-trial')) === 'failed', 'both jobs failed');
    const job = await queue.getJob(jobId);
    expect(job!.failedReason).toMatch(new RegExp(`^job ${jobId} is not a valid trial, so it was failed without running anything: unknown key 'shell'; .*config\\.optimizer\\.learningRate: Too small`));
    // Unrecoverable: not retried, whatever its attempts.
    expect(job!.attemptsMade).toBe(1);
    expect((await queue.getJob('not-a-trial'))!.failedReason).toMatch(/payload must be an object/);
    expect(fake.calls.size).toBe(0);
    expect(worker.events.filter((e) => e.kind === 'trial-start')).toEqual([]);
  });

  it("a worker whose data differs refuses the trial, hands it back untouched and stops with a clear message; a worker with the trial's data runs it", async () => {
    const queueName = newQueueName();
    const copy = join(tmp, queueName, 'other-data');
    mkdirSync(copy, { recursive: true });
    for (const file of readdirSync(tinyCifarDir)) copyFileSync(join(tinyCifarDir, file), join(copy, file));
    const bytes = readFileSync(join(copy, 'test_batch.bin'));
    bytes[7] ^= 1;
    writeFileSync(join(copy, 'test_batch.bin'), bytes);
    const fake = fakeTrials();
    const { executor, notes } = coordinator(queueName, { dataChecksums: dataChecksumsFor(base, tinyCifarDir) });
    const search = runSearch(spec(1), { executor, resultsPath: join(tmp, queueName, 'results.jsonl') });
    const wrong = startWorker(queueName, { runTrial: fake.fn, dataDir: copy, name: 'wrong-data' });
    const summary = await wrong.done;
    expect(summary.stoppedBecause).toMatch(/^worker wrong-data refused trial [0-9a-f]{16}: data file test_batch differs from the one this config was made with/);
    expect(summary).toMatchObject({ completed: 0, failed: 0 });
    expect(fake.calls.size).toBe(0);
    const queue = rawQueue(queueName);
    const jobId = jobIdOf(drawTrials(spec(1))[0].trialId);
    expect(await queue.getJobState(jobId)).toBe('waiting');
    expect((await queue.getJob(jobId))!.attemptsMade).toBe(0);
    await until(() => notes.some((n) => /worker wrong-data refused trial .* and stopped: data file test_batch differs/.test(n)), 'the refusal note');
    startWorker(queueName, { runTrial: fake.fn, name: 'right-data' });
    const outcome = await search;
    expect(outcome.results.map((r) => [r.status, r.worker])).toEqual([['completed', 'right-data']]);
  });

  it('a first stop lets the running trial finish and takes no other; a second hands it back at once, for another worker', async () => {
    const queueName = newQueueName();
    const trials = drawTrials(spec(3));
    const fake = fakeTrials((t) => ({ kind: 'ok', ms: t.index === 2 ? 60_000 : 400 }));
    const { executor } = coordinator(queueName);
    const search = runSearch(spec(3), { executor, resultsPath: join(tmp, queueName, 'results.jsonl') });
    const a = startWorker(queueName, { runTrial: fake.fn, name: 'a' });
    const start = (await a.when((e) => e.kind === 'trial-start')) as Extract<QueueWorkerEvent, { kind: 'trial-start' }>;
    a.stop.abort();
    const summaryA = await a.done;
    expect(summaryA).toMatchObject({ completed: 1, abandoned: 0, stoppedBecause: null });
    expect(a.events.filter((e) => e.kind === 'trial-start').map((e) => (e as typeof start).trial.trialId)).toEqual([start.trial.trialId]);

    // Worker b runs until it holds the endless trial, then is stopped twice: the trial goes back.
    const b = startWorker(queueName, { runTrial: fake.fn, name: 'b' });
    await b.when((e) => e.kind === 'trial-start' && e.trial.index === 2);
    b.stop.abort();
    const stoppedAt = Date.now();
    b.abandon.abort();
    const summaryB = await b.done;
    expect(Date.now() - stoppedAt).toBeLessThan(4000);
    expect(summaryB.abandoned).toBe(1);
    const queue = rawQueue(queueName);
    const jobId = jobIdOf(trials[2].trialId);
    expect(await queue.getJobState(jobId)).toBe('waiting');
    expect((await queue.getJob(jobId))!.attemptsMade).toBe(0);
    const fast = fakeTrials();
    startWorker(queueName, { runTrial: fast.fn, name: 'c' });
    const outcome = await search;
    expect(outcome.results.map((r) => r.trialId).sort()).toEqual(trials.map((t) => t.trialId).sort());
    expect(outcome.results.find((r) => r.index === 2)!.worker).toBe('c');
  });

  it('a worker that dies mid-trial loses nothing: once its lock expires, another worker takes the trial over, and it is recorded once', async () => {
    const queueName = newQueueName();
    const { executor } = coordinator(queueName);
    const search = runSearch(spec(1), { executor, resultsPath: join(tmp, queueName, 'results.jsonl') });
    // A worker that takes the trial and dies: a raw BullMQ worker that never finishes, closed by force (no lock renewal, no hand-back).
    let taken!: () => void;
    const tookIt = new Promise<void>((resolve) => (taken = resolve));
    const doomed = new Worker(queueName, async () => {
      taken();
      await new Promise(() => {});
      // Workers of one queue share their stalled-check settings (a check sets the pace for all): as `bnmlp worker` does.
    }, { connection: { host: redis.host, port: redis.port, password: PASSWORD }, lockDuration: 1000, stalledInterval: 200, name: 'doomed' });
    await tookIt;
    await doomed.close(true);
    const fake = fakeTrials();
    const survivor = startWorker(queueName, { runTrial: fake.fn, name: 'survivor', stalledIntervalMs: 200 });
    const outcome = await search;
    expect(outcome.results.map((r) => [r.status, r.worker])).toEqual([['completed', 'survivor']]);
    expect(survivor.events.some((e) => e.kind === 'stalled')).toBe(true);
    expect(recordedIds(join(tmp, queueName, 'results.jsonl'))).toHaveLength(1);
  });

  it('survives a Redis restart mid-search (appendonly): every trial recorded once', async () => {
    const queueName = newQueueName();
    const fake = fakeTrials(() => ({ kind: 'ok', ms: 300 }));
    startWorker(queueName, { runTrial: fake.fn, lockDurationMs: 5000 });
    startWorker(queueName, { runTrial: fake.fn, lockDurationMs: 5000 });
    let ended = 0;
    let endedAtRestart = -1;
    let restarted: Promise<void> | null = null;
    const results = join(tmp, queueName, 'results.jsonl');
    const pidBefore = redis.pid();
    const outcome = await runSearch(spec(8), {
      executor: coordinator(queueName).executor, resultsPath: results,
      onEvent: (e) => {
        if (e.kind === 'trial-end' && ++ended === 2) restarted = redis.restart().then(() => void (endedAtRestart = ended));
      },
    });
    await restarted;
    // The server really went away and came back while trials were still to be recorded.
    expect(redis.pid()).not.toBe(pidBefore);
    expect(endedAtRestart).toBeGreaterThanOrEqual(2);
    expect(endedAtRestart).toBeLessThan(8);
    expect(outcome.results).toHaveLength(8);
    const ids = recordedIds(results);
    expect(new Set(ids).size).toBe(8);
    expect(ids).toHaveLength(8);
  });

  it('when Redis loses the jobs (a restart without persistence), the coordinator enqueues them again', async () => {
    const queueName = newQueueName();
    const fake = fakeTrials(() => ({ kind: 'ok', ms: 200 }));
    const { executor, notes } = coordinator(queueName);
    const results = join(tmp, queueName, 'results.jsonl');
    const search = runSearch(spec(3), { executor, resultsPath: results });
    const queue = rawQueue(queueName);
    await until(async () => (await queue.getJobCounts('waiting')).waiting === 3, 'three waiting jobs');
    const client = new Redis({ host: redis.host, port: redis.port, password: PASSWORD });
    cleanups.push(async () => client.disconnect());
    const keys = await client.keys(`bull:${queueName}:*`);
    await client.del(...keys);
    startWorker(queueName, { runTrial: fake.fn });
    const outcome = await search;
    expect(outcome.results).toHaveLength(3);
    expect(new Set(recordedIds(results)).size).toBe(3);
    expect(notes.filter((n) => /is no longer on queue .*enqueued again/.test(n))).toHaveLength(3);
  });

  it('a wrong password, a missing password or no server: a clear error that never shows the password', async () => {
    const wrong = `redis://:wrong-${PASSWORD}@127.0.0.1:${redis.port}`;
    const executor = new QueueExecutor({ url: wrong });
    cleanups.push(() => executor.close());
    const refused = await executor.connect().then(() => null, (error: Error) => error);
    expect(refused).toBeInstanceOf(QueueConnectionError);
    expect(refused!.message).toMatch(new RegExp(`^Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${redis.port}/0: refused the password in the URL \\(WRONGPASS`));
    expect(refused!.message).not.toContain(PASSWORD);
    const worker = await runQueueWorker({ url: wrong, runTrial: fakeTrials().fn }).then(() => null, (error: Error) => error);
    expect(worker!.message).toBe(refused!.message);
    const none = await runQueueWorker({ url: `redis://127.0.0.1:${redis.port}`, runTrial: fakeTrials().fn }).then(() => null, (error: Error) => error);
    expect(none!.message).toMatch(/requires a password .*redis:\/\/:PASSWORD@host:port/);
    const port = await freePort();
    const nothing = await new QueueExecutor({ url: `redis://:${PASSWORD}@127.0.0.1:${port}` }).connect().then(() => null, (error: Error) => error);
    expect(nothing!.message).toBe(`Redis at redis://:***@127.0.0.1:${port}/0: nothing answers there (connection refused): is redis-server running on that host and port?`);
  });

  it('no message of any test above showed the password', () => {
    expect(messages.length).toBeGreaterThan(10);
    for (const message of messages) expect(message).not.toContain(PASSWORD);
    expect(DEFAULT_QUEUE_NAME).toBe('bnmlp-trials');
    expect(existsSync(redis.dir)).toBe(true);
  });
});
