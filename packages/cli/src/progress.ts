import cliProgress from 'cli-progress';
import type { EpochRecord, TrainingEvent } from '@bnmlp/trainer';

/*
Progress of training runs, trials and downloads. On a terminal: a cli-progress bar with ETA on
stderr, redrawn at most 10 times a second. Elsewhere (a pipe, a log file, CI): one plain line per
epoch or trial, so logs stay readable. `--quiet` shows neither; `--json` sends lines to stderr
so stdout holds the JSON document alone.
*/

export interface ProgressSink {
  /** A line of log (not a TTY), or a message printed above the bar (TTY). */
  readonly line: (text: string) => void;
  /** The terminal stream for bars, or null when progress is plain lines. */
  readonly terminal: NodeJS.WritableStream | null;
  readonly quiet: boolean;
}

function pct(value: number): string {
  return `${(100 * value).toFixed(1)}%`;
}

export function formatEpochLine(label: string, record: EpochRecord, epochs: number): string {
  const val = record.validation ? ` | val cost ${record.validation.cost.toFixed(4)} acc ${pct(record.validation.accuracy)}` : '';
  return `${label ? `[${label}] ` : ''}epoch ${String(record.epoch).padStart(String(epochs).length)}/${epochs}  η ${record.learningRate.toPrecision(4)}  train cost ${record.train.cost.toFixed(4)} acc ${pct(record.train.accuracy)}${val}  (${record.seconds.toFixed(2)} s)`;
}

/** A bar (or lines) for one training run; returns the event handler and a stop function. */
export function trainingProgress(sink: ProgressSink, label: string): { onEvent: (event: TrainingEvent) => void; stop: () => void } {
  if (sink.quiet) return { onEvent: () => {}, stop: () => {} };
  if (!sink.terminal) {
    let epochs = 0;
    return {
      onEvent: (event) => {
        if (event.kind === 'start') epochs = event.epochs;
        else if (event.kind === 'epoch-end') sink.line(formatEpochLine(label, event.record, epochs));
        else if (event.kind === 'note') sink.line(`${label ? `[${label}] ` : ''}note: ${event.message}`);
      },
      stop: () => {},
    };
  }
  // A MultiBar (of one bar) can print log lines above the bar without restarting it, so the ETA keeps its history.
  const bars = new cliProgress.MultiBar(
    {
      stream: sink.terminal,
      format: `${label ? `${label} ` : ''}|{bar}| {percentage}% epoch {epoch}/{epochs} loss {loss} | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 200,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let bar: cliProgress.SingleBar | null = null;
  let epochs = 0;
  return {
    onEvent: (event) => {
      if (event.kind === 'start') {
        epochs = event.epochs;
        const done = event.resumedAt ? event.resumedAt.epoch * event.stepsPerEpoch + event.resumedAt.step : 0;
        bar = bars.create(event.totalSteps, done, { epoch: 1, epochs, loss: '-' });
      } else if (event.kind === 'step') bar?.update(event.globalStep, { epoch: event.epoch, loss: event.loss.toFixed(3) });
      else if (event.kind === 'epoch-end') bars.log(`${formatEpochLine(label, event.record, epochs)}\n`);
      else if (event.kind === 'note') bars.log(`${label ? `[${label}] ` : ''}note: ${event.message}\n`);
    },
    stop: () => bars.stop(),
  };
}

/** A bar over many units (trials, bytes): `update(done, payload)`. */
export function countProgress(sink: ProgressSink, label: string, total: number, unit: string): { update: (done: number, detail?: string) => void; stop: () => void } {
  if (sink.quiet) return { update: () => {}, stop: () => {} };
  if (!sink.terminal) {
    return { update: (done, detail) => sink.line(`[${label}] ${done}/${total} ${unit}${detail ? `  ${detail}` : ''}`), stop: () => {} };
  }
  const bar = new cliProgress.SingleBar(
    { stream: sink.terminal, format: `${label} |{bar}| {value}/{total} ${unit} {detail} | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true, fps: 10 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { detail: '' });
  return {
    update: (done, detail) => bar.update(done, { detail: detail ?? '' }),
    stop: () => bar.stop(),
  };
}
