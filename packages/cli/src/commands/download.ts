import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  CIFAR_ARCHIVE_FILE, CIFAR_BATCHES_DIR, CIFAR_BINARY_MD5, CIFAR_BINARY_URL, DATA_DIR_ENV, DownloadError, defaultCacheDir, downloadCifar,
  type DownloadEvent, type DownloadResult,
} from '@bnmlp/trainer';
import { progressSink } from '../experiments/common.js';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { countProgress, type ProgressSink } from '../progress.js';
import { HELP_FLAG, JSON_FLAG, QUIET_FLAG } from '../experiments/common.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp download`: the official CIFAR-10 binary archive into the download cache (@bnmlp/trainer's
downloadCifar: resumable .part, md5 check, safe extraction, atomic rename), with a progress bar on
a terminal and a few plain lines elsewhere. Ctrl-C keeps the .part and prints the command that
resumes it (the same one). Afterwards it says how the other commands find the data.
*/

const op = 'bnmlp download';
const MB = 1e6;

export const DOWNLOAD_FLAGS: readonly FlagSpec[] = [
  { flag: 'dir', value: '<dir>', help: `download cache: the data goes to <dir>/${CIFAR_BATCHES_DIR}`, default: `$${DATA_DIR_ENV}, else ~/.cache/bnmlp` },
  { flag: 'url', value: '<url>', help: 'where the archive is (http or https)', default: CIFAR_BINARY_URL },
  { flag: 'md5', value: '<md5>', help: "the archive's md5 (32 hex digits)", default: CIFAR_BINARY_MD5 },
  { flag: 'force', help: 'download and extract again even when the data is already there' },
  QUIET_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

export interface DownloadSettings {
  readonly cacheDir: string;
  readonly url: string;
  readonly md5: string;
  readonly force: boolean;
  readonly quiet: boolean;
  readonly json: boolean;
}

export interface DownloadReport {
  readonly format: 'bnmlp-download';
  readonly version: 1;
  readonly url: string;
  readonly md5: string;
  readonly cacheDir: string;
  /** <cacheDir>/cifar-10-batches-bin */
  readonly dir: string;
  readonly archive: string;
  /** The data was already there: nothing was downloaded. */
  readonly cached: boolean;
  readonly seconds: number;
  /** How the other commands find it. */
  readonly usage: { readonly dataFlag: string; readonly env: string; readonly envAlreadySet: boolean };
}

type Values = Readonly<Record<string, string | boolean | undefined>>;

export function parseDownloadSettings(values: Values, context: CommandContext): DownloadSettings {
  const url = typeof values.url === 'string' ? values.url : CIFAR_BINARY_URL;
  let protocol: string | null = null;
  try {
    protocol = new URL(url).protocol;
  } catch {
    protocol = null;
  }
  if (protocol !== 'http:' && protocol !== 'https:') throw new CliArgumentError(op, '--url', 'an http:// or https:// URL', quote(url));
  const md5 = typeof values.md5 === 'string' ? values.md5 : CIFAR_BINARY_MD5;
  if (!/^[0-9a-fA-F]{32}$/.test(md5)) throw new CliArgumentError(op, '--md5', '32 hexadecimal digits', quote(md5));
  if (values.dir === '') throw new CliArgumentError(op, '--dir', 'a directory path', "''");
  const cacheDir = typeof values.dir === 'string' ? resolve(context.cwd ?? process.cwd(), values.dir) : defaultCacheDir(context.env ?? process.env);
  if (existsSync(cacheDir) && !statSync(cacheDir).isDirectory()) throw new CliArgumentError(op, '--dir', 'a directory (or a path to create)', `${quote(cacheDir)} (a file)`);
  return { cacheDir, url, md5: md5.toLowerCase(), force: values.force === true, quiet: values.quiet === true, json: values.json === true };
}

const mb = (bytes: number) => (bytes / MB).toFixed(1);

/** A bar over megabytes on a terminal; otherwise a line per stage and per quarter of the transfer. */
function downloadProgress(sink: ProgressSink, cacheDir: string): { onEvent: (event: DownloadEvent) => void; stop: () => void } {
  if (sink.quiet) return { onEvent: () => {}, stop: () => {} };
  let bar: ReturnType<typeof countProgress> | null = null;
  let nextMark = 0;
  let total: number | null = null;
  const stopBar = () => {
    bar?.stop();
    bar = null;
  };
  const onEvent = (event: DownloadEvent) => {
    switch (event.kind) {
      case 'start': {
        stopBar();
        total = event.totalBytes;
        const size = total === null ? 'size unknown' : `${mb(total)} MB`;
        sink.line(event.resumedFrom > 0 ? `resuming ${event.url} at ${mb(event.resumedFrom)} of ${size} into ${cacheDir}` : `downloading ${event.url} (${size}) into ${cacheDir}`);
        if (sink.terminal && total !== null) {
          bar = countProgress(sink, 'download', Number(mb(total)), 'MB');
          bar.update(Number(mb(event.resumedFrom)));
        }
        // Plain lines: at each quarter of the archive (every 25 MB when the size is unknown).
        const step = total === null ? 25 * MB : total / 4;
        nextMark = (Math.floor(event.resumedFrom / step) + 1) * step;
        break;
      }
      case 'progress':
        if (bar) bar.update(Number(mb(event.receivedBytes)));
        else {
          const step = total === null ? 25 * MB : total / 4;
          if (event.receivedBytes >= nextMark && (total === null || event.receivedBytes < total)) {
            sink.line(`  ${mb(event.receivedBytes)}${total === null ? '' : ` of ${mb(total)}`} MB`);
            nextMark = (Math.floor(event.receivedBytes / step) + 1) * step;
          }
        }
        break;
      case 'retry':
        stopBar();
        sink.line(`retrying (${event.attempt}): ${event.reason}`);
        break;
      case 'verify':
        stopBar();
        sink.line('checking the md5');
        break;
      case 'extract':
        stopBar();
        sink.line('extracting');
        break;
      case 'done':
        stopBar();
        break;
    }
  };
  return { onEvent, stop: stopBar };
}

/** An argument as a POSIX shell reads it back. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function hintFor(error: DownloadError, settings: DownloadSettings): string {
  switch (error.reason) {
    case 'md5':
      return 'the file at that URL is not the expected archive (a captive portal or proxy page, or another version); it was deleted. Run again later, or pass --md5 if you meant another file';
    case 'http':
      return `the server refused the archive${error.status === 404 ? ' (not found)' : ''}: check --url`;
    case 'network':
      return `no internet? copy the extracted ${CIFAR_BATCHES_DIR} from a machine that has it and pass --data <dir> to the other commands (or put it in ${settings.cacheDir}); what was received is kept, so the same command resumes`;
    case 'unsafe-entry':
      return 'the archive holds a link or a path outside its folder: it is not the official CIFAR-10 archive, and nothing of it was extracted';
    case 'layout':
      return `not a CIFAR-10 binary archive (or a damaged ${CIFAR_BATCHES_DIR} in the cache): pass --force to download it again`;
    case 'size':
      return 'the server sent more bytes than it announced; the partial file was deleted: run again';
    case 'aborted':
      return 'stopped';
  }
}

export async function runDownload(settings: DownloadSettings, args: readonly string[], context: CommandContext): Promise<number> {
  const sink = progressSink(context, settings);
  const progress = downloadProgress(sink, settings.cacheDir);
  const started = performance.now();
  let result: DownloadResult;
  try {
    result = await downloadCifar({ url: settings.url, md5: settings.md5, cacheDir: settings.cacheDir, force: settings.force, signal: context.signal, onEvent: progress.onEvent });
  } catch (error) {
    progress.stop();
    if (!(error instanceof DownloadError)) throw error;
    // The same command resumes, without --force (which would discard the .part).
    const kept = args.filter((arg) => arg !== '--force');
    const again = `bnmlp download${kept.length > 0 ? ` ${kept.map(shellQuote).join(' ')}` : ''}`;
    if (error.reason === 'aborted') {
      const part = join(settings.cacheDir, `${CIFAR_ARCHIVE_FILE}.part`);
      const partial = existsSync(part) ? `the partial download (${mb(statSync(part).size)} MB) is kept in ${part}` : 'nothing partial to keep';
      context.stderr(`${op}: stopped; ${partial}. Resume with:\n  ${again}\n`);
      return 130;
    }
    context.stderr(`${op}: ${error.message.replace(/^downloadCifar: /, '')}\nhint: ${hintFor(error, settings)}\n`);
    return 1;
  }
  const env = context.env ?? process.env;
  const envAlreadySet = Boolean(env[DATA_DIR_ENV]) && resolve(env[DATA_DIR_ENV]!) === settings.cacheDir;
  const report: DownloadReport = {
    format: 'bnmlp-download',
    version: 1,
    url: settings.url,
    md5: settings.md5,
    cacheDir: settings.cacheDir,
    dir: result.dir,
    archive: result.archive,
    cached: result.cached,
    seconds: (performance.now() - started) / 1000,
    usage: { dataFlag: `--data ${shellQuote(result.dir)}`, env: `export ${DATA_DIR_ENV}=${shellQuote(settings.cacheDir)}`, envAlreadySet },
  };
  if (settings.json) {
    context.stdout(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  const lines = [
    result.cached
      ? `CIFAR-10 (binary) is already in ${result.dir}: nothing downloaded (pass --force to download it again)`
      : `CIFAR-10 (binary) downloaded, checked (md5 ${settings.md5}) and extracted to ${result.dir} in ${report.seconds.toFixed(1)} s`,
    envAlreadySet
      ? `use it:   every command finds it ($${DATA_DIR_ENV} is ${settings.cacheDir}), or pass ${report.usage.dataFlag}`
      : `use it:   bnmlp train ${report.usage.dataFlag}   (any command's --data)`,
  ];
  if (!envAlreadySet) lines.push(`   or:   ${report.usage.env}   (then every command finds it)`);
  context.stdout(`${lines.join('\n')}\n`);
  return 0;
}

function downloadHelp(): string {
  return [
    'Usage: bnmlp download [options]',
    '',
    'Downloads the official CIFAR-10 binary archive (~163 MB) into the download cache and extracts it to',
    `<cache>/${CIFAR_BATCHES_DIR}, checking its md5 and every archive entry.`,
    'An interrupted download (Ctrl-C, a dropped connection) keeps its .part file: the same command resumes it.',
    `Data already there is not downloaded again. Afterwards the other commands find it through --data or $${DATA_DIR_ENV}.`,
    '',
    'Options:',
    formatFlags(DOWNLOAD_FLAGS),
    '',
    'Exit status: 0 the data is there, 1 the download failed (with a hint), 2 usage error, 130 stopped by Ctrl-C (resumable).',
    '',
  ].join('\n');
}

export const downloadCommand: Command = {
  name: 'download',
  summary: 'download CIFAR-10 (binary) into the cache, resumably, md5-checked',
  help: downloadHelp,
  async run(args: readonly string[], context: CommandContext): Promise<number> {
    const { values } = parseFlags(op, args, DOWNLOAD_FLAGS);
    if (values.help === true) {
      context.stdout(downloadHelp());
      return 0;
    }
    return runDownload(parseDownloadSettings(values, context), args, context);
  },
};
