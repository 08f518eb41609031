import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allowRelaxedSimd, backendInfo, initBackend } from '@bnmlp/core';
import { kernelThreadsPerProcess, LocalProcessExecutor, QueueExecutor, runSearch, type SearchSpec, type TrialExecutor } from '@bnmlp/trainer';
import { writeFullSizeSet } from './bench-trainer.js';

/*
The queue's figures (issue: search across machines, Performance): the same short trials run
through the queue on 1 and on 2 `bnmlp worker` processes (speedup), and on 1 and 2 processes of
the LocalProcessExecutor, so the queue's cost per trial shows (target: < 5% of a 10-second trial)
and its speedup can be read beside the local pool's in the same run (a busy machine has less
than its 2 cores to give).
Every executor is warmed up first (its trial process started, the data read once), so what is
timed is the steady state of a search: each trial's hand-out, the trial, its result coming back.
Redis is the given URL, or a redis-server started here on a free loopback port and stopped after.
*/

export interface QueueBenchOptions {
  readonly trials?: number;
  readonly epochs?: number;
  readonly seed?: number;
  /** A Redis to use; default: start /usr/bin/redis-server here. */
  readonly redisUrl?: string;
  /** The bnmlp binary for the worker processes (default: bin.js beside this build). */
  readonly bin?: string;
}

export interface QueueBenchRun {
  /** Wall time of the whole search. */
  readonly seconds: number;
  /** The trials' own times (as their workers measured them), summed. */
  readonly trialSeconds: number;
}

export interface QueueBenchResult {
  readonly trials: number;
  readonly epochs: number;
  readonly local: QueueBenchRun;
  readonly localTwo: QueueBenchRun;
  readonly queueOne: QueueBenchRun;
  readonly queueTwo: QueueBenchRun;
  /** queueOne.seconds / queueTwo.seconds. */
  readonly speedup: number;
  /** local.seconds / localTwo.seconds: what 2 processes buy on this machine now, without a queue. */
  readonly localSpeedup: number;
  readonly meanTrialSeconds: number;
  /** Seconds per trial that the queue adds over the local executor, 1 worker each: from wall times, and from wall time minus the trials' own time. */
  readonly overheadPerTrial: { readonly wall: number; readonly beyondTrials: number };
  /** overheadPerTrial.beyondTrials over a 10-second trial. */
  readonly overheadOfTenSecondTrial: number;
}

const REDIS_SERVER = '/usr/bin/redis-server';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Starts `command` and resolves once its output matches `ready`; rejects if it exits first or after `timeoutMs`. */
function startProcess(command: string, args: readonly string[], ready: RegExp, timeoutMs: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args[0] ?? ''}: not ready within ${timeoutMs} ms: ${output.slice(-1000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} ${args[0] ?? ''}: exited (${code}) before it was ready: ${output.slice(-1000)}`));
    });
  });
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function benchSpec(stage: string, trials: number, epochs: number, seed: number): SearchSpec {
  return {
    stage,
    baseConfig: { network: { hiddenDims: [50, 30] }, optimizer: { learningRate: 0.01, momentum: 0.8 }, epochs, batchSize: 100, seed, data: { trainCount: 5000, validationCount: 1000, test: false } },
    ranges: { learningRate: { min: 1e-3, max: 5e-2 }, lambda: { min: 1e-5, max: 1e-2 } },
    trials, seed,
  };
}

/** A one-trial, one-epoch search (its own stage) to start the executor's trial processes and read the data, then the timed search. */
async function timedSearch(executor: TrialExecutor, dir: string, label: string, options: Required<Pick<QueueBenchOptions, 'trials' | 'epochs' | 'seed'>>): Promise<QueueBenchRun> {
  await runSearch(benchSpec('warmup', 1, 1, options.seed), { executor, resultsPath: join(dir, `warmup-${label}.jsonl`) });
  const started = performance.now();
  const outcome = await runSearch(benchSpec('bench', options.trials, options.epochs, options.seed), { executor, resultsPath: join(dir, `results-${label}.jsonl`) });
  const seconds = (performance.now() - started) / 1000;
  const failed = outcome.results.filter((r) => r.status === 'failed');
  if (failed.length > 0 || outcome.results.length !== options.trials) throw new Error(`bench ${label}: ${outcome.results.length} of ${options.trials} trials, ${failed.length} failed${failed[0] ? `: ${failed[0].error}` : ''}`);
  return { seconds, trialSeconds: outcome.results.reduce((sum, r) => sum + r.seconds, 0) };
}

export async function runQueueBench(options: QueueBenchOptions = {}, onProgress: (message: string) => void = () => {}): Promise<QueueBenchResult> {
  const settings = { trials: options.trials ?? 8, epochs: options.epochs ?? 10, seed: options.seed ?? 0 };
  const bin = options.bin ?? fileURLToPath(new URL('../bin.js', import.meta.url));
  if (!existsSync(bin)) throw new Error(`bench queue: the bnmlp binary ${bin} does not exist (build the CLI first)`);
  // As the bnmlp binary sets up its processes (worker processes do the same): the local pool mirrors this one.
  if (!backendInfo()) {
    allowRelaxedSimd();
    await initBackend('auto');
  }
  const dir = mkdtempSync(join(tmpdir(), 'bnmlp-bench-queue-'));
  const started: ChildProcess[] = [];
  try {
    const data = join(dir, 'data');
    writeFullSizeSet(data, 2000, settings.seed);
    let url = options.redisUrl;
    if (!url) {
      if (!existsSync(REDIS_SERVER)) throw new Error(`bench queue: ${REDIS_SERVER} is not installed (apt-get install redis-server), and no Redis URL was given`);
      const port = await freePort();
      started.push(await startProcess(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''], /Ready to accept connections/, 15_000));
      url = `redis://127.0.0.1:${port}/0`;
    }

    const locally = async (workers: number): Promise<QueueBenchRun> => {
      onProgress(`bench queue: ${settings.trials} trials on ${workers} local worker process${workers === 1 ? '' : 'es'} (LocalProcessExecutor)`);
      const executor = new LocalProcessExecutor({ workers, dataDir: data });
      try {
        return await timedSearch(executor, dir, `local-${workers}`, settings);
      } finally {
        await executor.close();
      }
    };
    const local = await locally(1);
    const localTwo = await locally(2);

    const throughQueue = async (workers: number): Promise<QueueBenchRun> => {
      const queueName = `bench-${process.pid}-${workers}`;
      onProgress(`bench queue: ${settings.trials} trials through the queue on ${workers} bnmlp worker process${workers === 1 ? '' : 'es'}`);
      const crew = await Promise.all(Array.from({ length: workers }, () =>
        // Workers on one machine stand for machines of their own: each gets its share of the cores.
        startProcess(process.execPath, [bin, 'worker', '--queue', url, '--queue-name', queueName, '--concurrency', '1', '--threads', String(kernelThreadsPerProcess(workers)), '--data', data], /serving queue /, 60_000)));
      started.push(...crew);
      const executor = new QueueExecutor({ url, queueName, pollIntervalMs: 1000 });
      try {
        await executor.connect();
        return await timedSearch(executor, dir, `queue-${workers}`, settings);
      } finally {
        await executor.close();
        await Promise.all(crew.map((child) => stopProcess(child)));
      }
    };
    const queueOne = await throughQueue(1);
    const queueTwo = await throughQueue(2);
    const n = settings.trials;
    const beyondTrials = (queueOne.seconds - queueOne.trialSeconds - (local.seconds - local.trialSeconds)) / n;
    return {
      trials: n, epochs: settings.epochs, local, localTwo, queueOne, queueTwo,
      speedup: queueOne.seconds / queueTwo.seconds,
      localSpeedup: local.seconds / localTwo.seconds,
      meanTrialSeconds: (local.trialSeconds + queueOne.trialSeconds) / (2 * n),
      overheadPerTrial: { wall: (queueOne.seconds - local.seconds) / n, beyondTrials },
      overheadOfTenSecondTrial: beyondTrials / 10,
    };
  } finally {
    for (const child of started.reverse()) await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatQueueBench(r: QueueBenchResult): string {
  const s = (x: number) => `${x.toFixed(2)} s`;
  const ms = (x: number) => `${(1000 * x).toFixed(0)} ms`;
  return [
    `queue: ${r.trials} trials of ${r.epochs} epochs (${r.meanTrialSeconds.toFixed(2)} s each, one at a time): through the queue 1 worker ${s(r.queueOne.seconds)}, 2 workers ${s(r.queueTwo.seconds)} (speedup ${r.speedup.toFixed(2)}×); local pool 1 process ${s(r.local.seconds)}, 2 processes ${s(r.localTwo.seconds)} (speedup ${r.localSpeedup.toFixed(2)}×)`,
    `queue overhead per trial vs the local executor: ${ms(r.overheadPerTrial.beyondTrials)} beyond the trials' own time (${ms(r.overheadPerTrial.wall)} in wall time), ${(100 * r.overheadOfTenSecondTrial).toFixed(2)}% of a 10-second trial`,
  ].join('\n');
}
