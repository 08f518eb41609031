import { hostname } from 'node:os';
import { applyBackendSetup, failedTrialResult, PreparedDataCache, type TrialProcessReply, type TrialProcessRequest } from './trial-executor.js';
import type { TrainingEvent } from './training.js';
import { runTrial, TrialAbortedError, type TrialSpec } from './trial.js';

/*
The child process of LocalProcessExecutor (forked from dist/trial-process.js): set up the backend
as the parent says, then run one trial at a time as asked, answering over IPC with plain JSON.
It lives for the whole search, keeping the prepared data of consecutive trials on the same data.
*/

if (!process.send) {
  process.stderr.write('trial-process.js is the child of LocalProcessExecutor: it runs only under child_process.fork\n');
  process.exit(2);
}

const worker = `${hostname()}:${process.pid}`;
let cache = new PreparedDataCache();
let dataDir: string | undefined;
let eventIntervalMs = 100;
let initialised: Promise<void> | null = null;
let current: { readonly trialId: string; readonly controller: AbortController } | null = null;

function reply(message: TrialProcessReply): void {
  process.send!(message);
}

// Ctrl-C in a terminal reaches the whole process group: the parent decides what stops, and tells us.
process.on('SIGINT', () => {});
// The parent is gone (it crashed or was killed): nobody wants our results.
process.on('disconnect', () => process.exit(0));

/** Forwards a trial's events, 'step' events at most every eventIntervalMs (the rest are rare and all go). */
function eventForwarder(trialId: string): (event: TrainingEvent) => void {
  let lastStep = -Infinity;
  return (event) => {
    if (event.kind === 'step') {
      const now = performance.now();
      if (now - lastStep < eventIntervalMs && event.step !== event.stepsPerEpoch) return;
      lastStep = now;
    }
    reply({ type: 'event', trialId, event });
  };
}

async function run(trial: TrialSpec): Promise<void> {
  const controller = new AbortController();
  current = { trialId: trial.trialId, controller };
  const started = performance.now();
  try {
    await initialised;
    const result = await runTrial(trial, { dataDir, signal: controller.signal, worker, data: cache.tryGet(trial.config), onEvent: eventForwarder(trial.trialId) });
    reply({ type: 'result', result });
  } catch (error) {
    if (error instanceof TrialAbortedError) reply({ type: 'aborted', trialId: trial.trialId });
    else reply({ type: 'result', result: failedTrialResult(trial, worker, `the trial threw: ${(error as Error)?.message ?? String(error)}`, (performance.now() - started) / 1000) });
  } finally {
    current = null;
  }
}

process.on('message', (message: TrialProcessRequest) => {
  switch (message?.type) {
    case 'init':
      dataDir = message.dataDir ?? undefined;
      eventIntervalMs = message.eventIntervalMs;
      cache = new PreparedDataCache(dataDir);
      initialised = applyBackendSetup(message.setup).then(
        (backend) => reply({ type: 'ready', backend }),
        // The parent then gives up on this pool: exit once the reason is on its way.
        (error: Error) => {
          process.send!({ type: 'init-failed', message: error.message } satisfies TrialProcessReply, () => process.exit(1));
        },
      );
      return;
    case 'run':
      void run(message.trial);
      return;
    case 'abort':
      if (current?.trialId === message.trialId) current.controller.abort();
      return;
    case 'exit':
      current?.controller.abort();
      process.exit(0);
  }
});
