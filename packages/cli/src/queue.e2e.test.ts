import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './cli.js';
import { builtBin, runBin } from './test-support/built-bin.js';
import { cliRoot, tinyCifarDir } from './test-support/paths.js';

/*
`bnmlp search … --queue` and `bnmlp worker` end to end: the compiled binary, a real redis-server
(started here on a free loopback port with a password and appendonly persistence), two or three
worker processes on the generated fixture. Normal completion against a local search, SIGKILL of
a worker mid-trial, Ctrl-C of a worker (once, twice), a coordinator killed and started again, a
Redis restart mid-search, a malformed job, a wrong password. Waits are on output lines, each
with a bound.

The Redis helper (packages/trainer/src/test-support/redis-server.ts) and BullMQ (a dependency of
@bnmlp/trainer, not of this package) are imported by computed specifiers, as download.test.ts
does, so this package's typecheck does not take them in; what is used is restated here.
*/
interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  halt(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
interface RedisServerModule {
  redisServerAvailable(): boolean;
  startRedisServer(options: { password?: string; appendonly?: boolean }): Promise<RedisServer>;
  readonly REDIS_MISSING_MESSAGE: string;
}
interface BullQueue {
  add(name: string, data: unknown, opts: { jobId: string; attempts: number }): Promise<unknown>;
  getJobState(id: string): Promise<string>;
  getJob(id: string): Promise<{ failedReason: string; attemptsMade: number } | undefined>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  close(): Promise<void>;
}
interface BullModule {
  Queue: new (name: string, opts: { connection: { host: string; port: number; password: string } }) => BullQueue;
}
const REDIS_MODULE = '../../trainer/src/test-support/redis-server.js';
const { redisServerAvailable, startRedisServer, REDIS_MISSING_MESSAGE } = (await import(REDIS_MODULE)) as RedisServerModule;
const bullmqPath = createRequire(join(cliRoot, '..', 'trainer', 'package.json')).resolve('bullmq');

const PASSWORD = 'e2e-queue-pw-7f3a91';
const available = redisServerAvailable();
if (!available) console.warn(REDIS_MISSING_MESSAGE);

let bin: string;
let tmp: string;
let redis: RedisServer;
let bull: BullModule;
/** Every process this file starts, killed after each test if still running. */
const processes = new Set<Proc>();

beforeAll(async () => {
  if (!available) return;
  bin = builtBin();
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-e2e-queue-'));
  redis = await startRedisServer({ password: PASSWORD, appendonly: true });
  bull = (await import(pathToFileURL(bullmqPath).href)) as BullModule;
});
afterEach(async () => {
  await Promise.all([...processes].map((p) => p.kill('SIGKILL')));
  processes.clear();
});
afterAll(async () => {
  await redis?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A running binary: its output so far, a wait for a line, its exit. */
class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();

  constructor(args: readonly string[], env: Record<string, string> = {}) {
    // The URL with its password goes through the environment, as the README recommends.
    this.child = spawn(process.execPath, [bin, ...args], { cwd: tmp, env: { ...process.env, BNMLP_REDIS_URL: redis.url, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString('utf8');
      this.wakeAll();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
      this.wakeAll();
    });
    this.exited = new Promise((resolve) => this.child.on('close', (status, signal) => {
      processes.delete(this);
      this.wakeAll();
      resolve({ status, signal });
    }));
    processes.add(this);
  }

  private wakeAll(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiting) wake();
  }

  get output(): string {
    return this.stdout + this.stderr;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the match once the output (stdout and stderr) matches; rejects after `timeoutMs` or when the process ends first. */
  waitFor(pattern: RegExp, timeoutMs = 40_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms in:\n${this.output.slice(-3000)}`)), timeoutMs);
      const check = () => {
        const match = this.output.match(pattern);
        if (match) {
          clearTimeout(timer);
          resolve(match);
        } else if (!this.running) {
          clearTimeout(timer);
          reject(new Error(`exited before ${pattern}:\n${this.output.slice(-3000)}`));
        } else this.waiters.add(check);
      };
      check();
    });
  }

  /** Calls `wake` once, at the next output (or exit). */
  onOutput(wake: () => void): void {
    this.waiters.add(wake);
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    this.signal(signal);
    await this.exited;
  }
}

let queueCount = 0;
const fixture = ['--data', tinyCifarDir];

/**
 * `n` workers on a queue of the test's own, each ready. A short --stalled-after only where a
 * worker dies: elsewhere a busy machine must not make a live worker look dead.
 */
async function workers(queueName: string, n: number, stalledAfter = '10'): Promise<Proc[]> {
  const started = Array.from({ length: n }, () => new Proc(['worker', '--queue-name', queueName, '--concurrency', '1', '--stalled-after', stalledAfter, ...fixture]));
  await Promise.all(started.map((w) => w.waitFor(/serving queue /)));
  return started;
}

function search(queueName: string, name: string, args: string[]): Proc {
  return new Proc(['search', 'coarse', '--queue', 'env', '--queue-name', queueName, ...fixture, '--name', name, ...args]);
}

interface Row {
  trialId: string;
  index: number;
  status: string;
  worker: string;
  history: Array<Record<string, unknown>>;
  summary: { train: { accuracy: number }; validation: { accuracy: number } } | null;
  config: unknown;
}

function results(name: string): Row[] {
  return readFileSync(join(tmp, 'runs', name, 'results.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row);
}

/** Trial ids each worker log says it started, all workers together. */
function startedTrials(procs: readonly Proc[]): string[] {
  return procs.flatMap((p) => [...p.stdout.matchAll(/^trial ([0-9a-f]{16}) .*: started/gm)].map((m) => m[1]));
}

function expectOnceEach(rows: readonly Row[], total: number): void {
  expect(rows).toHaveLength(total);
  expect(new Set(rows.map((r) => r.trialId)).size).toBe(total);
}

function newQueue(): string {
  return `e2e-${process.pid}-${++queueCount}`;
}

function bullQueue(queueName: string): BullQueue {
  return new bull.Queue(queueName, { connection: { host: redis.host, port: redis.port, password: PASSWORD } });
}

const strip = (history: Row['history']) => history.map(({ seconds: _s, stepSeconds: _t, ...rest }) => rest);

describe('bnmlp worker and search --queue: usage errors (no Redis needed)', () => {
  async function run(argv: string[], env: Record<string, string | undefined> = {}) {
    const out = { stdout: '', stderr: '' };
    const status = await runCli(argv, { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t), env, cwd: tmpdir() });
    return { status, ...out };
  }

  it.each([
    [['worker'], {}, /option --queue must be a Redis URL .*, or \$BNMLP_REDIS_URL set, got neither/],
    [['worker', '--queue', 'http://:s3cret@h:1'], {}, /option --queue must be a Redis URL.*got 'http:\/\/:\*\*\*@h:1' \(the scheme is http/],
    [['worker'], { BNMLP_REDIS_URL: 'redis://:s3cret@h:1/x' }, /\$BNMLP_REDIS_URL.* must be a Redis URL.*got 'redis:\/\/:\*\*\*@h:1\/x' \(the database must be a number/],
    [['worker', '--queue', 'redis://h', '--concurrency', '0'], {}, /option --concurrency must be an integer in \[1, 256\], got '0'/],
    [['worker', '--queue', 'redis://h', '--stalled-after', '0.1'], {}, /option --stalled-after must be at least 0.5 seconds/],
    [['worker', '--queue', 'redis://h', '--threads', '0'], {}, /option --threads must be 'auto' or an integer from 1 to 8, got '0'/],
    [['search', 'coarse', '--queue', 'redis://h', '--workers', '2'], {}, /option --workers must be left out with --queue/],
    [['search', 'coarse', '--queue', 'env'], {}, /option --queue must be a Redis URL, or 'env' with \$BNMLP_REDIS_URL set/],
    [['search', 'coarse', '--queue', 'redis://:s3cret@h:99999'], {}, /option --queue must be a Redis URL.*got 23 characters that are not a URL \(not shown/],
    [['search', 'coarse', '--queue-name', 'q'], {}, /option --queue-name must be given with --queue/],
  ])('%j is a usage error (exit 2) that never shows a password', async (argv, env, message) => {
    const { status, stdout, stderr } = await run(argv, env);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(message);
    expect(stderr).not.toContain('s3cret');
  });
});

describe.skipIf(!available)('bnmlp search --queue with bnmlp worker processes', () => {
  it('finishes with the same trials, table, figures and weights as a local search with the same seed, and leaves the queue empty', async () => {
    const queueName = newQueue();
    const crew = await workers(queueName, 2);
    const local = await runBin(bin, ['search', 'coarse', ...fixture, '--trials', '4', '--epochs', '2', '--seed', '7', '--workers', '2', '--name', 'local-7'], { cwd: tmp, timeoutMs: 60_000 });
    expect(local.status).toBe(0);
    const queued = search(queueName, 'queue-7', ['--trials', '4', '--epochs', '2', '--seed', '7']);
    expect(await queued.exited).toEqual({ status: 0, signal: null });
    expect(queued.stdout).toMatch(/queue .* at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0 \(Redis [\d.]+\), 2 workers connected/);
    const table = (text: string) => text.slice(text.indexOf('\n#  ')).split('\nbest:')[0];
    expect(table(queued.stdout)).toBe(table(local.stdout));
    const ours = results('queue-7');
    const theirs = new Map(results('local-7').map((r) => [r.trialId, r]));
    expectOnceEach(ours, 4);
    for (const row of ours) {
      const twin = theirs.get(row.trialId)!;
      expect(twin, row.trialId).toBeDefined();
      expect([row.status, row.config, row.summary?.validation.accuracy, row.summary?.train.accuracy]).toEqual([twin.status, twin.config, twin.summary?.validation.accuracy, twin.summary?.train.accuracy]);
      expect(strip(row.history)).toEqual(strip(twin.history));
      // The weights came back through the queue; the workers wrote nothing here.
      expect(readFileSync(join(tmp, 'runs', 'queue-7', 'weights', `${row.trialId}.json`), 'utf8')).toBe(readFileSync(join(tmp, 'runs', 'local-7', 'weights', `${row.trialId}.json`), 'utf8'));
    }
    for (const file of ['summary.md', 'plots/search-coarse-scatter.svg', 'plots/search-coarse-scatter.png']) expect(existsSync(join(tmp, 'runs', 'queue-7', file)), file).toBe(true);
    expect(startedTrials(crew).sort()).toEqual(ours.map((r) => r.trialId).sort());
    const queue = bullQueue(queueName);
    expect(await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed')).toEqual({ waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0 });
    await queue.close();
  });

  it('a worker says how many kernel threads each trial gets: its share of the cores by default (at most 8), --threads when given', async () => {
    const queueName = newQueue();
    const [plain] = await workers(queueName, 1);
    const pinned = new Proc(['worker', '--queue-name', queueName, '--concurrency', '1', '--threads', '1', ...fixture]);
    await pinned.waitFor(/serving queue /);
    const share = Math.min(8, availableParallelism());
    expect(plain.output).toMatch(new RegExp(`, 1 trial at once, ${share} kernel threads? each; data: `));
    expect(pinned.output).toMatch(/, 1 trial at once, 1 kernel thread each; data: /);
  });

  it('a worker killed mid-trial (SIGKILL) loses nothing: another worker reruns its trial, recorded once', async () => {
    const queueName = newQueue();
    const [doomed, survivor] = await workers(queueName, 2, '2');
    const run = search(queueName, 'sigkill', ['--trials', '3', '--epochs', '300', '--seed', '8']);
    const [, trialId] = await doomed.waitFor(/^trial ([0-9a-f]{16}) .*: started/m);
    await doomed.kill('SIGKILL');
    await survivor.waitFor(new RegExp(`job trial-${trialId}: its worker stopped answering`), 30_000);
    expect(await run.exited).toEqual({ status: 0, signal: null });
    const rows = results('sigkill');
    expectOnceEach(rows, 3);
    expect(rows.every((r) => r.status === 'completed')).toBe(true);
    expect(startedTrials([doomed, survivor]).filter((id) => id === trialId)).toHaveLength(2);
    expect(survivor.stdout).toMatch(new RegExp(`^trial ${trialId}: completed`, 'm'));
  });

  it('Ctrl-C lets a worker finish its trial; Ctrl-C again hands it back to the queue for another worker, and exits 130', async () => {
    const queueName = newQueue();
    const crew = await workers(queueName, 2);
    const run = search(queueName, 'ctrl-c', ['--trials', '1', '--epochs', '1000', '--seed', '9']);
    // Whichever worker takes the one trial is stopped; the other is idle and takes it over.
    const taken = await Promise.race(crew.map((w) => w.waitFor(/^trial ([0-9a-f]{16}) .*: started/m).then((m) => ({ worker: w, trialId: m[1] }))));
    const first = taken.worker;
    const second = crew.find((w) => w !== first)!;
    first.signal('SIGINT');
    await first.waitFor(/finishing 1 running trial, taking no new one/);
    expect(first.running).toBe(true);
    first.signal('SIGINT');
    await first.waitFor(/handing 1 running trial back to the queue/);
    expect(await first.exited).toEqual({ status: 130, signal: null });
    expect(first.stdout).toMatch(new RegExp(`^trial ${taken.trialId}: handed back to the queue`, 'm'));
    expect(first.stdout).not.toMatch(new RegExp(`^trial ${taken.trialId}: completed`, 'm'));
    await second.waitFor(new RegExp(`^trial ${taken.trialId}: completed`, 'm'));
    expect(await run.exited).toEqual({ status: 0, signal: null });
    expectOnceEach(results('ctrl-c'), 1);
  });

  it('a coordinator killed mid-search and started again reattaches, collects what finished meanwhile, and runs nothing twice', async () => {
    const queueName = newQueue();
    const crew = await workers(queueName, 2);
    const args = ['--trials', '4', '--epochs', '300', '--seed', '10'];
    const first = search(queueName, 'restart', args);
    await first.waitFor(/1\/4 trials/);
    await first.kill('SIGKILL');
    // The workers go on without a coordinator.
    await outputOf(crew, () => crew.reduce((n, w) => n + (w.stdout.match(/: completed,/g)?.length ?? 0), 0) >= 3, 'three trials finished');
    const second = search(queueName, 'restart', args);
    expect(await second.exited).toEqual({ status: 0, signal: null });
    // The first coordinator recorded one trial, or two that ended together, before it died.
    const done = Number(second.stdout.match(/resuming, (\d) of 4 trials already done/)![1]);
    expect(second.stdout).toMatch(new RegExp(`reattached to ${4 - done} of ${4 - done} trials already on queue`));
    const rows = results('restart');
    expectOnceEach(rows, 4);
    const started = startedTrials(crew);
    expect(started.sort()).toEqual(rows.map((r) => r.trialId).sort());
  });

  it('survives a Redis restart (appendonly) mid-search: every trial recorded once', async () => {
    const queueName = newQueue();
    const crew = await workers(queueName, 2);
    const run = search(queueName, 'redis-restart', ['--trials', '4', '--epochs', '300', '--seed', '11']);
    await run.waitFor(/1\/4 trials/);
    await redis.halt('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await redis.start();
    expect(await run.exited).toEqual({ status: 0, signal: null });
    expectOnceEach(results('redis-restart'), 4);
    for (const p of [run, ...crew]) expect(p.output).not.toContain(PASSWORD);
  });

  it('a malformed job put on the queue with BullMQ is failed with a clear error and never run', async () => {
    const queueName = newQueue();
    const [worker] = await workers(queueName, 1);
    const queue = bullQueue(queueName);
    const jobId = 'trial-00000000000000ab';
    await queue.add('trial', { searchId: 'evil', trialId: '00000000000000ab', index: 0, config: { network: { hiddenDims: [5000] }, optimizer: { learningRate: -1 }, epochs: 1e9 }, command: 'rm -rf ~' }, { jobId, attempts: 3 });
    await worker.waitFor(/rejected, not run: job trial-00000000000000ab is not a valid trial/);
    await until(async () => (await queue.getJobState(jobId)) === 'failed', 'the job failed');
    const job = await queue.getJob(jobId);
    expect(job!.failedReason).toMatch(/^job trial-00000000000000ab is not a valid trial, so it was failed without running anything: unknown key 'command'; config\.optimizer\.learningRate: Too small/);
    expect(job!.attemptsMade).toBe(1);
    expect(worker.stdout).not.toMatch(/: started/);
    await queue.close();
  });

  it('a wrong password is a clear error, exit 1, and the password is never printed', async () => {
    const wrong = `redis://:wrong-${PASSWORD}@127.0.0.1:${redis.port}`;
    const worker = await runBin(bin, ['worker', '--queue', wrong, ...fixture], { cwd: tmp, timeoutMs: 30_000 });
    expect(worker.status).toBe(1);
    expect(worker.stderr).toMatch(new RegExp(`^bnmlp: Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${redis.port}/0: refused the password in the URL \\(WRONGPASS`, 'm'));
    const coordinator = await runBin(bin, ['search', 'coarse', '--queue', 'env', ...fixture, '--trials', '2', '--epochs', '1', '--name', 'wrong-pw'], { cwd: tmp, timeoutMs: 30_000, env: { BNMLP_REDIS_URL: wrong } });
    expect(coordinator.status).toBe(1);
    expect(coordinator.stderr).toMatch(/refused the password in the URL/);
    expect(existsSync(join(tmp, 'runs', 'wrong-pw'))).toBe(false);
    for (const text of [worker.stdout, worker.stderr, coordinator.stdout, coordinator.stderr]) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain('wrong-');
    }
    expect(readdirSync(redis.dir).length).toBeGreaterThan(0);
  });
});

/** Resolves once `condition` holds, checked at each output of `procs`; rejects after `timeoutMs`. */
function outputOf(procs: readonly Proc[], condition: () => boolean, what: string, timeoutMs = 40_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const check = () => {
      if (done) return;
      if (condition()) {
        done = true;
        clearTimeout(timer);
        resolve();
      } else for (const p of procs) p.onOutput(check);
    };
    check();
  });
}

/** Polls Redis state (no event to wait on) every 100 ms; rejects after `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 40_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
