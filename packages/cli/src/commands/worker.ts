import { availableParallelism } from 'node:os';
import {
  DEFAULT_QUEUE_NAME, parseRedisUrl, REDIS_URL_ENV, resolveRedisUrl, runQueueWorker, TrainerArgumentError,
  type QueueWorkerEvent, type QueueWorkerSummary,
} from '@bnmlp/trainer';
import { COMMON_FLAGS, parseCommon, parseInteger, parseNumber, parseThreads, progressSink, startBackend } from '../experiments/common.js';
import { percent } from '../experiments/run-outputs.js';
import { CliArgumentError } from '../errors.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp worker --queue redis://…`: serves a search's trials from a BullMQ queue in Redis until
stopped, on any number of machines (`bnmlp search coarse|fine --queue …` enqueues them). Each
trial runs in a child process; its result, weights included, goes back through the queue. The
first Ctrl-C lets running trials finish; the second hands them back to the queue for another
worker (bin.ts would exit at once: this command takes the second Ctrl-C over while it runs).
*/

const op = 'bnmlp worker';

const SHARED = new Set(['data', 'backend', 'quiet', 'help']);

export const WORKER_FLAGS: readonly FlagSpec[] = [
  { flag: 'queue', value: '<url>', help: 'redis://[:password@]host:port[/db] (the variable keeps the password out of `ps`)', default: `$${REDIS_URL_ENV}` },
  { flag: 'queue-name', value: '<name>', help: 'the BullMQ queue to serve (as given to `bnmlp search --queue-name`)', default: DEFAULT_QUEUE_NAME },
  { flag: 'concurrency', value: '<n>', help: 'trials at once, each in its own process', default: 'one per core' },
  {
    flag: 'threads', value: '<n|auto>',
    help: "our dense kernels' threads in each trial process: 1 to 8, or 'auto' (every core); with several workers on one machine, give each its share (more threads than cores slow every trial)",
    default: 'the cores divided among --concurrency',
  },
  { flag: 'stalled-after', value: '<s>', help: "seconds a silent worker keeps its trials before others take them over (its lock); the same on every worker", default: '30' },
  ...COMMON_FLAGS.filter((f) => SHARED.has(f.flag)),
];

/** The ready line's kernel threads per trial. */
function threadsEach(threads: number | 'auto' | null): string {
  if (threads === 'auto') return 'a kernel thread per core each';
  if (threads === null) return 'kernel threads as each trial process chooses';
  return `${threads} kernel thread${threads === 1 ? '' : 's'} each`;
}

function workerHelp(): string {
  return [
    'Usage: bnmlp worker [--queue redis://[:password@]host:port[/db]] [options]',
    '',
    'Runs search trials from a queue in Redis (BullMQ) until stopped; start one on every machine that',
    'should help, then `bnmlp search coarse|fine --queue …` anywhere. Each trial runs in a process of',
    'its own; its history, summary and final weights go back through the queue (no shared disk).',
    'Before a trial runs, the data (--data) is checked against the sha256 of each file in the',
    "trial's config: a worker whose data differs hands the trial back untouched and stops, naming",
    'the file. A worker that dies mid-trial loses nothing: after --stalled-after seconds another',
    'worker takes its trial over. Malformed jobs are failed without running anything.',
    '',
    'Ctrl-C: finish the running trials, take no new one, exit. Ctrl-C again: hand the running',
    'trials back to the queue (another worker reruns them) and exit. SIGTERM: the same at once.',
    '',
    'Options:',
    formatFlags(WORKER_FLAGS),
    '',
    'Exit status: 0 stopped by SIGTERM, 1 cannot connect or stopped by itself (its data differs), 2 usage error,',
    '130 stopped by Ctrl-C.',
    '',
  ].join('\n');
}

function trialLabel(trialId: string): string {
  return `trial ${trialId}`;
}

function describeEvent(event: QueueWorkerEvent): { text: string; error?: boolean; always?: boolean } | null {
  switch (event.kind) {
    case 'ready':
      return null;
    case 'trial-start': {
      const { optimizer } = event.trial.config;
      return { text: `${trialLabel(event.trial.trialId)} (#${event.trial.index} of ${event.trial.searchId}, η ${optimizer.learningRate.toPrecision(4)}, λ ${optimizer.lambda.toPrecision(4)}): started, attempt ${event.attempt} of ${event.attempts}` };
    }
    case 'trial-end': {
      const r = event.result;
      const detail = r.status === 'completed' ? `validation ${percent(r.summary?.validation?.accuracy ?? null)}` : r.error ?? '';
      const retry = r.status === 'failed' ? (event.attempt < event.attempts ? ' (the queue retries it)' : ' (no attempts left: recorded as failed)') : '';
      return { text: `${trialLabel(r.trialId)}: ${r.status}${detail ? `, ${detail}` : ''} (${r.seconds.toFixed(1)} s)${retry}` };
    }
    case 'rejected':
      return { text: `rejected, not run: ${event.message}`, error: true, always: true };
    case 'refused':
      return { text: `refused ${trialLabel(event.trialId)} (handed back to the queue): ${event.message}`, error: true, always: true };
    case 'abandoned':
      return { text: `${trialLabel(event.trialId)}: handed back to the queue for another worker`, always: true };
    case 'lost':
      return { text: `${trialLabel(event.trialId)}: this worker lost its lock (too slow to renew it, or Redis was away): another worker runs it`, always: true };
    case 'stalled':
      return { text: `job ${event.jobId}: its worker stopped answering; back on the queue for another worker` };
    case 'stopping':
      return { text: event.message, always: true, error: event.mode === 'refused' || event.mode === 'broken' };
    case 'connection':
      return { text: `redis: ${event.message}`, error: true, always: true };
  }
}

/**
 * The first Ctrl-C (bin.ts aborts context.signal) stops gracefully; from then on this command
 * owns SIGINT, so the second one abandons the running trials instead of exiting at once (a third
 * exits). SIGTERM abandons at once. Returns the function that restores the handlers.
 */
function takeOverSignals(context: CommandContext, graceful: AbortController, abandon: AbortController, stopped: { by: 'sigint' | 'sigterm' | null }): () => void {
  const signal = context.signal;
  if (!signal) return () => {};
  let displaced: Array<(...args: unknown[]) => void> = [];
  const onSecond = () => {
    if (abandon.signal.aborted) {
      context.stderr('\nbnmlp worker: interrupted a third time, exiting without waiting\n');
      process.exit(130);
    }
    context.stderr('\nbnmlp worker: handing the running trials back to the queue (Ctrl-C again to exit without waiting)...\n');
    abandon.abort();
  };
  const onFirst = () => {
    stopped.by ??= 'sigint';
    graceful.abort();
    displaced = process.listeners('SIGINT') as Array<(...args: unknown[]) => void>;
    for (const listener of displaced) process.removeListener('SIGINT', listener);
    process.on('SIGINT', onSecond);
  };
  const onTerm = () => {
    stopped.by ??= 'sigterm';
    graceful.abort();
    abandon.abort();
  };
  signal.addEventListener('abort', onFirst, { once: true });
  if (signal.aborted) onFirst();
  process.on('SIGTERM', onTerm);
  return () => {
    signal.removeEventListener('abort', onFirst);
    process.removeListener('SIGINT', onSecond);
    process.removeListener('SIGTERM', onTerm);
    for (const listener of displaced) process.on('SIGINT', listener);
  };
}

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run search trials from a queue in Redis (for `search --queue`), until stopped',
  help: workerHelp,
  async run(args, context) {
    const { values } = parseFlags(op, args, WORKER_FLAGS);
    if (values.help) {
      context.stdout(workerHelp());
      return 0;
    }
    const settings = parseCommon(op, values, context);
    const found = resolveRedisUrl(typeof values.queue === 'string' ? values.queue : null, context.env ?? process.env);
    if (!found) throw new CliArgumentError(op, '--queue', `a Redis URL (redis://[:password@]host:port[/db]), or $${REDIS_URL_ENV} set`, 'neither');
    const flag = found.source === REDIS_URL_ENV ? `$${REDIS_URL_ENV}` : '--queue';
    let display: string;
    try {
      display = parseRedisUrl(found.url, flag).display;
    } catch (error) {
      if (error instanceof TrainerArgumentError) throw new CliArgumentError(op, flag, error.expected, error.actual);
      throw error;
    }
    const queueName = typeof values['queue-name'] === 'string' ? values['queue-name'] : DEFAULT_QUEUE_NAME;
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(queueName)) throw new CliArgumentError(op, '--queue-name', 'a name of letters, digits, ., _ and -', `'${queueName}'`);
    const concurrency = parseInteger(op, 'concurrency', values.concurrency, availableParallelism(), 1, 256);
    const kernelThreads = typeof values.threads === 'string' ? parseThreads(op, values.threads) : undefined;
    const stalledAfter = parseNumber(op, 'stalled-after', values['stalled-after'], 30, 'positive');
    if (stalledAfter < 0.5) throw new CliArgumentError(op, '--stalled-after', 'at least 0.5 seconds', `'${values['stalled-after']}'`);
    const sink = progressSink(context, settings);
    // The trial processes copy this process's backend setup (as a local search's do).
    const backend = await startBackend(settings);

    const graceful = new AbortController();
    const abandon = new AbortController();
    const stopped: { by: 'sigint' | 'sigterm' | null } = { by: null };
    const restore = takeOverSignals(context, graceful, abandon, stopped);
    let summary: QueueWorkerSummary;
    try {
      summary = await runQueueWorker({
        url: found.url, queueName, concurrency, kernelThreads, dataDir: settings.data.dir, signal: graceful.signal, abandonSignal: abandon.signal,
        lockDurationMs: Math.round(stalledAfter * 1000),
        onEvent: (event) => {
          if (event.kind === 'ready') {
            if (!settings.quiet)
              sink.line(
                `${op} ${event.worker}: serving queue ${event.queueName} at ${event.url} (Redis ${event.redisVersion}), ${event.concurrency} trial${event.concurrency === 1 ? '' : 's'} at once, ` +
                `${threadsEach(event.kernelThreads)}; data: ${settings.data.description}; backend ${backend.name}. Ctrl-C to stop.`,
              );
            return;
          }
          const shown = describeEvent(event);
          if (!shown || (settings.quiet && !shown.always)) return;
          if (shown.error) context.stderr(`${op}: ${shown.text}\n`);
          else sink.line(shown.text);
        },
      });
    } finally {
      restore();
    }
    const line = `${op}: stopped after ${summary.completed} trial${summary.completed === 1 ? '' : 's'} run to a result, ${summary.failed} failed attempt${summary.failed === 1 ? '' : 's'}, ${summary.rejected} malformed job${summary.rejected === 1 ? '' : 's'} rejected, ${summary.abandoned} handed back (queue ${queueName} at ${display})`;
    if (!settings.quiet) sink.line(line);
    if (summary.stoppedBecause) {
      context.stderr(`${op}: ${summary.stoppedBecause}\n`);
      return 1;
    }
    return stopped.by === 'sigterm' ? 0 : 130;
  },
};
