import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { writeReport, type ReportFigure } from './document.js';
import { confusionFigure, curvesFigure, gridFigure, overlayFigure, searchScatterFigure, type History } from './figures.js';
import { pngSize, writeFigure } from './render.js';

/*
The HTML report in a real browser: Debian's headless Chromium opens report.html from disk, and we
check what a reader would get: every figure drawn at a size, text laid out in it, no console
errors, no request but the file itself, no horizontal scrolling; and keep a screenshot
(/tmp/bnmlp-report-screenshot.png).

How the browser is driven: the DevTools protocol over `--remote-debugging-pipe` (JSON messages
separated by NUL on the child's file descriptors 3 and 4, as Puppeteer and Playwright do when
told to use a pipe). Node 20 has no WebSocket client without a flag (`globalThis.WebSocket` is
undefined; vitest's workers do not take `--experimental-websocket`), and the pipe needs none: no
port to find, nothing listening on the network, and the browser exits when the pipe closes. The
CLI modes (`--dump-dom`, `--screenshot`) could show neither rendered sizes, nor console errors
reliably, nor network requests.

Skipped, with a message, where Chromium is not installed (`apt-get install -y chromium`); set
BNMLP_CHROMIUM to use another binary.
*/

const CHROMIUM = [process.env.BNMLP_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p): p is string => typeof p === 'string' && p !== '' && existsSync(p));
if (!CHROMIUM) console.warn('browser.test.ts: skipped: Chromium is not installed (/usr/bin/chromium; apt-get install -y chromium, or set BNMLP_CHROMIUM)');

const SCREENSHOT_COPY = '/tmp/bnmlp-report-screenshot.png';
const COMMAND_TIMEOUT_MS = 20_000;

interface CdpEvent {
  readonly method: string;
  readonly params: Record<string, unknown>;
  readonly sessionId?: string;
}

/** A DevTools-protocol client over Chromium's --remote-debugging-pipe. */
class PipeClient {
  private nextId = 1;
  private buffer = '';
  private readonly pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; method: string }>();
  readonly events: CdpEvent[] = [];
  private readonly waiters: Array<{ method: string; resolve: (e: CdpEvent) => void }> = [];
  private closedError: Error | null = null;

  constructor(
    private readonly input: Writable,
    output: Readable,
  ) {
    output.setEncoding('utf8');
    output.on('data', (chunk: string) => this.receive(chunk));
    output.on('close', () => this.fail(new Error('Chromium closed the DevTools pipe')));
    input.on('error', (error) => this.fail(error));
  }

  private fail(error: Error): void {
    this.closedError ??= error;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`${p.method}: ${error.message}`));
    }
    this.pending.clear();
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\0')) >= 0) {
      const message = JSON.parse(this.buffer.slice(0, end)) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown>; sessionId?: string };
      this.buffer = this.buffer.slice(end + 1);
      if (message.id !== undefined) {
        const p = this.pending.get(message.id);
        if (!p) continue;
        this.pending.delete(message.id);
        clearTimeout(p.timer);
        if (message.error) p.reject(new Error(`${p.method}: ${message.error.message}`));
        else p.resolve(message.result ?? {});
      } else if (message.method) {
        const event = { method: message.method, params: message.params ?? {}, sessionId: message.sessionId };
        this.events.push(event);
        for (const w of this.waiters.filter((x) => x.method === event.method)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(event);
        }
      }
    }
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    if (this.closedError) return Promise.reject(new Error(`${method}: ${this.closedError.message}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from Chromium in ${COMMAND_TIMEOUT_MS} ms`));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer, method });
      this.input.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  waitFor(method: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<CdpEvent> {
    const seen = this.events.find((e) => e.method === method);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} from Chromium in ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ method, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }
}

interface Browser {
  readonly child: ChildProcess;
  readonly client: PipeClient;
  readonly profile: string;
  stderr: string;
}

function launch(executable: string): Browser {
  const profile = mkdtempSync(join(tmpdir(), 'bnmlp-chromium-'));
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-extensions',
    '--disable-default-apps', '--disable-dev-shm-usage', '--mute-audio', '--hide-scrollbars', '--metrics-recording-only',
    '--password-store=basic', '--use-mock-keychain', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
  ];
  // detached: its own process group, so that the renderers go with it (kill -PGID below).
  const child = spawn(executable, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true });
  const browser: Browser = { child, client: new PipeClient(child.stdio[3] as Writable, child.stdio[4] as Readable), profile, stderr: '' };
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (browser.stderr.length < 20_000) browser.stderr += chunk;
  });
  return browser;
}

async function close(browser: Browser): Promise<void> {
  const exited = new Promise<void>((resolve) => (browser.child.exitCode !== null || browser.child.signalCode !== null ? resolve() : browser.child.once('exit', () => resolve())));
  await Promise.race([browser.client.send('Browser.close').catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
  const timer = setTimeout(() => {
    try {
      process.kill(-browser.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
  // Stray renderers of our process group, if any.
  try {
    process.kill(-browser.child.pid!, 'SIGKILL');
  } catch {
    // none left
  }
  rmSync(browser.profile, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
}

function history(epochs: number, rate: number, floor: number): History {
  return Array.from({ length: epochs }, (_, i) => {
    const t = i + 1;
    const loss = floor + 1.1 * Math.exp(-rate * t);
    const accuracy = 0.55 - 0.4 * Math.exp(-rate * t);
    return { epoch: t, train: { cost: loss + 0.05, loss, accuracy }, validation: { cost: loss + 0.15, loss: loss + 0.1, accuracy: accuracy - 0.04 } };
  });
}

const work: string[] = [];
afterAll(() => {
  for (const dir of work) rmSync(dir, { recursive: true, force: true });
});

/** A report like `bnmlp reproduce` writes: 5 figures, tables, notes, and text that needs escaping. */
async function writeSampleReport(dir: string): Promise<{ htmlPath: string; figures: number }> {
  const bn = history(15, 0.3, 1.2);
  const plain = history(15, 0.15, 1.35);
  const specs = {
    curves: curvesFigure(bn, { metric: 'cost', title: 'Best recipe: cost per epoch' }),
    overlay: overlayFigure([{ label: 'with BN', history: bn }, { label: 'without BN', history: plain }], { metric: 'accuracy', split: 'both', title: 'BN vs no BN: accuracy' }),
    grid: gridFigure(['with BN', 'without BN'].flatMap((row, r) => ['η = 0.001', 'η = 0.1'].map((column, c) => ({ row, column, history: history(8, 0.1 + 0.2 * c, 1.2 + 0.1 * r) }))), { metric: 'loss', title: 'Loss per learning rate' }),
    scatter: searchScatterFigure([{ learningRate: 0.01, lambda: 1e-4, validationAccuracy: 0.45, status: 'completed' }, { learningRate: 0.002, lambda: 1e-2, validationAccuracy: 0.38, status: 'completed' }, { learningRate: 0.09, lambda: 1e-5, validationAccuracy: 0, status: 'diverged' }], { title: 'Search' }),
    confusion: confusionFigure([[50, 3, 2], [4, 40, 6], [1, 5, 60]], ['cat', 'dog', 'frog'], { title: 'Confusion' }),
  };
  const figures: ReportFigure[] = [];
  for (const [name, spec] of Object.entries(specs)) {
    const paths = await writeFigure(join(dir, 'plots'), name, spec);
    figures.push({ name, caption: `${name} — with <script>alert("x")</script> & friends`, spec, svg: readFileSync(paths.svg, 'utf8'), pngPath: paths.png });
  }
  const { htmlPath } = writeReport(dir, {
    title: 'bnmlp report <in a browser> & more',
    subtitle: 'Synthetic histories',
    generatedAt: new Date(0).toISOString(),
    sections: [
      { id: 'curves', title: 'Curves', paragraphs: ['Training solid, validation dashed.'], tables: [{ caption: 'Final figures', columns: ['run', 'train acc', 'val acc'], rows: [['with BN', '53.10%', '49.20%'], ['without BN', '51.00%', null]] }], figures: figures.slice(0, 3) },
      { id: 'search', title: 'Search & confusion', paragraphs: ['<b>not bold</b>'], tables: [], figures: figures.slice(3) },
    ],
    notes: ['A note.'],
  });
  return { htmlPath, figures: figures.length };
}

interface PageFacts {
  figures: Array<{ id: string; width: number; height: number; texts: number; textLength: number; paths: number }>;
  scripts: number;
  images: number;
  resources: number;
  brokenLinks: string[];
  overflow: number;
  mainWidth: number;
  title: string;
  bodyText: string;
}

const FACTS = `(() => {
  const figures = [...document.querySelectorAll('figure')].map((f) => {
    const svg = f.querySelector('svg');
    if (!svg) return { id: f.id, width: 0, height: 0, texts: 0, textLength: 0, paths: 0 };
    const r = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll('text')];
    return { id: f.id, width: r.width, height: r.height, texts: texts.length, textLength: texts.reduce((s, t) => s + t.getComputedTextLength(), 0), paths: svg.querySelectorAll('path, rect, line').length };
  });
  const brokenLinks = [...document.querySelectorAll('a[href^="#"]')].map((a) => a.getAttribute('href').slice(1)).filter((id) => !document.getElementById(id));
  return {
    figures, brokenLinks,
    scripts: document.scripts.length,
    images: document.images.length,
    resources: performance.getEntriesByType('resource').length,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    mainWidth: document.querySelector('main').getBoundingClientRect().width,
    title: document.title,
    bodyText: document.body.innerText,
  };
})()`;

describe('the HTML report in Chromium', () => {
  test.skipIf(!CHROMIUM)('every figure drawn, no console error, no request but the file, a screenshot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bnmlp-browser-'));
    work.push(dir);
    const { htmlPath, figures } = await writeSampleReport(dir);
    const fileUrl = pathToFileURL(htmlPath).href;
    const browser = launch(CHROMIUM!);
    try {
      const { client } = browser;
      const { targetId } = (await client.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
      const { sessionId } = (await client.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
      const page = (method: string, params: Record<string, unknown> = {}) => client.send(method, params, sessionId);
      await Promise.all([page('Page.enable'), page('Runtime.enable'), page('Log.enable'), page('Network.enable')]);
      await page('Emulation.setDeviceMetricsOverride', { width: 1200, height: 900, deviceScaleFactor: 1, mobile: false });
      const loaded = client.waitFor('Page.loadEventFired');
      const navigation = (await page('Page.navigate', { url: fileUrl })) as { errorText?: string };
      expect(navigation.errorText ?? '').toBe('');
      await loaded;

      const facts = (await page('Runtime.evaluate', { expression: FACTS, returnByValue: true })) as { result: { value: PageFacts }; exceptionDetails?: unknown };
      expect(facts.exceptionDetails).toBeUndefined();
      const f = facts.result.value;
      expect(f.title).toBe('bnmlp report <in a browser> & more');
      expect(f.figures).toHaveLength(figures);
      for (const figure of f.figures) {
        expect(figure.width, figure.id).toBeGreaterThan(200);
        expect(figure.height, figure.id).toBeGreaterThan(100);
        expect(figure.texts, figure.id).toBeGreaterThan(3);
        expect(figure.textLength, figure.id).toBeGreaterThan(100);
        expect(figure.paths, figure.id).toBeGreaterThan(3);
      }
      expect(f.scripts).toBe(0);
      expect(f.images).toBe(0);
      expect(f.resources).toBe(0);
      expect(f.brokenLinks).toEqual([]);
      expect(f.overflow).toBeLessThanOrEqual(0);
      expect(f.mainWidth).toBeLessThanOrEqual(960);
      // Escaped text reads as written.
      expect(f.bodyText).toContain('with <script>alert("x")</script> & friends');
      expect(f.bodyText).toContain('<b>not bold</b>');

      // Full-page screenshot.
      const metrics = (await page('Page.getLayoutMetrics')) as { cssContentSize: { width: number; height: number } };
      const width = Math.ceil(metrics.cssContentSize.width);
      const height = Math.min(Math.ceil(metrics.cssContentSize.height), 16_000);
      const shot = (await page('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true, clip: { x: 0, y: 0, width, height, scale: 1 } })) as { data: string };
      const png = Buffer.from(shot.data, 'base64');
      expect(pngSize(png)).toEqual({ width, height });
      expect(height).toBeGreaterThan(1500);
      const screenshot = join(dir, 'report-screenshot.png');
      writeFileSync(screenshot, png);
      try {
        copyFileSync(screenshot, SCREENSHOT_COPY);
      } catch (error) {
        console.warn(`browser.test.ts: could not copy the screenshot to ${SCREENSHOT_COPY}: ${(error as Error).message}`);
      }

      // Let late events arrive, then judge them.
      await new Promise((r) => setTimeout(r, 300));
      const events = client.events.filter((e) => e.sessionId === sessionId);
      const requests = events.filter((e) => e.method === 'Network.requestWillBeSent').map((e) => (e.params.request as { url: string }).url);
      expect(requests).toEqual([fileUrl]);
      const problems = events
        .filter((e) => e.method === 'Runtime.exceptionThrown' || (e.method === 'Runtime.consoleAPICalled' && ['error', 'assert', 'warning'].includes(e.params.type as string)) || (e.method === 'Log.entryAdded' && ['error', 'warning'].includes((e.params.entry as { level: string }).level)))
        .map((e) => JSON.stringify(e.params).slice(0, 400));
      expect(problems).toEqual([]);
    } catch (error) {
      throw new Error(`${(error as Error).message}\nChromium stderr:\n${browser.stderr.slice(-4000)}`, { cause: error });
    } finally {
      await close(browser);
    }
    expect(existsSync(browser.profile)).toBe(false);
  }, 90_000);
});
