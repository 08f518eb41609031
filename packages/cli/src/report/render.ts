import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/*
Figures to files, headless and offline: Vega-Lite → Vega → SVG (vega's `View` with no renderer
and no canvas), then the SVG → PNG with resvg.

Fonts. Nothing may depend on the machine: resvg gets the DejaVu Sans files shipped in the
`dejavu-fonts-ttf` package and no system fonts, and every figure's text is set in that family
(vega config `font`), so a fresh machine and CI draw the same pixels. Without a canvas, vega
lays text out with a crude width estimate (0.8 em per character, far wider than any real font),
which leaves gaps around titles and legends and thins axis labels; so we give vega the real
advance widths of the same TrueType files (`vega.textMetrics.width`, the hook vega keeps for
headless renderers such as vl-convert). The SVG names `DejaVu Sans, sans-serif`, so a browser
without DejaVu still draws it in a sans-serif face.

Offline. Figures carry their data inline (`values`). A spec that names a URL anywhere (data,
image marks) is refused before rendering, and the view's loader refuses every load besides, so a
figure can never reach the network or the file system.
*/

/** The family the figures are set in: the first one resvg is given, and what the SVG names. */
export const FIGURE_FONT_FAMILY = 'DejaVu Sans';
/** The CSS font-family list written into the SVG (`font-family` of every text). */
export const FIGURE_FONT = `${FIGURE_FONT_FAMILY}, sans-serif`;
/** PNGs are rasterised at this multiple of the SVG's CSS pixels. */
export const PNG_SCALE = 2;

/** A figure that cannot be rendered (a URL in an offline figure, a Vega error). */
export class FigureRenderError extends Error {
  override readonly name = 'FigureRenderError';
}

export interface FigureFont {
  readonly family: string;
  readonly regular: string;
  readonly bold: string;
  readonly oblique: string;
  readonly boldOblique: string;
}

let fontFilesCache: FigureFont | null = null;

/** The TrueType files of DejaVu Sans in node_modules (package `dejavu-fonts-ttf`). */
export function figureFontFiles(): FigureFont {
  if (fontFilesCache) return fontFilesCache;
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = dirname(require.resolve('dejavu-fonts-ttf/package.json'));
  } catch (error) {
    throw new FigureRenderError(`figures need the font package 'dejavu-fonts-ttf' (a dependency of @bnmlp/cli); it is not installed: ${(error as Error).message}`);
  }
  const file = (name: string) => join(root, 'ttf', name);
  fontFilesCache = {
    family: FIGURE_FONT_FAMILY,
    regular: file('DejaVuSans.ttf'),
    bold: file('DejaVuSans-Bold.ttf'),
    oblique: file('DejaVuSans-Oblique.ttf'),
    boldOblique: file('DejaVuSans-BoldOblique.ttf'),
  };
  return fontFilesCache;
}

// ---------------------------------------------------------------------------------------------
// Advance widths from a TrueType file (cmap format 4 or 12, hhea, hmtx), for vega's text layout.

/** Horizontal advance widths of one TrueType font, in em. */
export class FontMetrics {
  private readonly advances: Uint16Array;
  private readonly unitsPerEm: number;
  private readonly glyphOf: (codePoint: number) => number;
  private readonly cache = new Map<number, number>();

  constructor(font: Buffer) {
    const view = new DataView(font.buffer, font.byteOffset, font.byteLength);
    const tables = new Map<string, number>();
    const numTables = view.getUint16(4);
    for (let i = 0; i < numTables; i++) {
      const record = 12 + 16 * i;
      tables.set(font.toString('latin1', record, record + 4), view.getUint32(record + 8));
    }
    const table = (tag: string): number => {
      const offset = tables.get(tag);
      if (offset === undefined) throw new FigureRenderError(`font file has no '${tag}' table`);
      return offset;
    };
    this.unitsPerEm = view.getUint16(table('head') + 18);
    const numberOfHMetrics = view.getUint16(table('hhea') + 34);
    const hmtx = table('hmtx');
    this.advances = new Uint16Array(numberOfHMetrics);
    for (let g = 0; g < numberOfHMetrics; g++) this.advances[g] = view.getUint16(hmtx + 4 * g);
    this.glyphOf = cmapLookup(view, table('cmap'));
  }

  /** Advance of one code point in em (the missing glyph's when the font has none). */
  advance(codePoint: number): number {
    let width = this.cache.get(codePoint);
    if (width === undefined) {
      const glyph = this.glyphOf(codePoint);
      width = this.advances[Math.min(glyph, this.advances.length - 1)] / this.unitsPerEm;
      this.cache.set(codePoint, width);
    }
    return width;
  }

  /** Width of `text` at `fontSize` px (no kerning). */
  width(text: string, fontSize: number): number {
    let em = 0;
    for (const char of text) em += this.advance(char.codePointAt(0)!);
    return em * fontSize;
  }
}

function cmapLookup(view: DataView, cmap: number): (codePoint: number) => number {
  const count = view.getUint16(cmap + 2);
  let format4 = -1;
  let format12 = -1;
  for (let i = 0; i < count; i++) {
    const record = cmap + 4 + 8 * i;
    const platform = view.getUint16(record);
    const encoding = view.getUint16(record + 2);
    const sub = cmap + view.getUint32(record + 4);
    const format = view.getUint16(sub);
    const unicode = platform === 0 || (platform === 3 && (encoding === 1 || encoding === 10));
    if (!unicode) continue;
    if (format === 12 && format12 < 0) format12 = sub;
    if (format === 4 && format4 < 0) format4 = sub;
  }
  if (format12 >= 0) {
    const groups = view.getUint32(format12 + 12);
    return (c) => {
      let lo = 0;
      let hi = groups - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        const at = format12 + 16 + 12 * mid;
        if (c < view.getUint32(at)) hi = mid - 1;
        else if (c > view.getUint32(at + 4)) lo = mid + 1;
        else return view.getUint32(at + 8) + (c - view.getUint32(at));
      }
      return 0;
    };
  }
  if (format4 < 0) throw new FigureRenderError('font file has no Unicode cmap (format 4 or 12)');
  const segments = view.getUint16(format4 + 6) / 2;
  const ends = format4 + 14;
  const starts = ends + 2 * segments + 2;
  const deltas = starts + 2 * segments;
  const rangeOffsets = deltas + 2 * segments;
  return (c) => {
    if (c > 0xffff) return 0;
    for (let i = 0; i < segments; i++) {
      if (view.getUint16(ends + 2 * i) < c) continue;
      const start = view.getUint16(starts + 2 * i);
      if (start > c) return 0;
      const delta = view.getUint16(deltas + 2 * i);
      const rangeOffset = view.getUint16(rangeOffsets + 2 * i);
      if (rangeOffset === 0) return (c + delta) & 0xffff;
      const glyph = view.getUint16(rangeOffsets + 2 * i + rangeOffset + 2 * (c - start));
      return glyph === 0 ? 0 : (glyph + delta) & 0xffff;
    }
    return 0;
  };
}

interface TextItem {
  readonly fontSize?: number | string | null;
  readonly fontWeight?: number | string | null;
}

let metricsCache: { regular: FontMetrics; bold: FontMetrics } | null = null;

function figureMetrics(): { regular: FontMetrics; bold: FontMetrics } {
  if (!metricsCache) {
    const files = figureFontFiles();
    metricsCache = { regular: new FontMetrics(readFileSync(files.regular)), bold: new FontMetrics(readFileSync(files.bold)) };
  }
  return metricsCache;
}

function isBold(weight: number | string | null | undefined): boolean {
  if (weight === null || weight === undefined) return false;
  if (typeof weight === 'number') return weight >= 600;
  return weight === 'bold' || weight === 'bolder' || Number(weight) >= 600;
}

/**
 * Width of a text item as vega measures it: the untruncated text (vega truncates to `limit`
 * itself, by asking for the widths of prefixes), in the figure font.
 */
export function figureTextWidth(item: TextItem, text: unknown): number {
  const size = item.fontSize === null || item.fontSize === undefined ? 11 : Number(item.fontSize) || 0;
  const value = text === null || text === undefined ? '' : String(text).trim();
  if (size <= 0 || value === '') return 0;
  const metrics = figureMetrics();
  return (isBold(item.fontWeight) ? metrics.bold : metrics.regular).width(value, size);
}

function installTextMetrics(): void {
  const metrics = (vega as unknown as { textMetrics: { width: (item: TextItem, text: unknown) => number } }).textMetrics;
  if (metrics.width !== figureTextWidth) metrics.width = figureTextWidth;
}

// ---------------------------------------------------------------------------------------------
// Compile and render.

/** Defaults every figure gets (a spec's own `config` wins, except the font, see above). */
export const FIGURE_CONFIG = {
  font: FIGURE_FONT,
  background: 'white',
} as const;

export interface CompiledFigure {
  /** The Vega spec. */
  readonly vega: vega.Spec;
  /** What Vega-Lite warned about while compiling (empty for a clean spec). */
  readonly warnings: string[];
}

function message(args: readonly unknown[]): string {
  return args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
}

function collectingLogger(warnings: string[]) {
  let level = 0;
  const logger = {
    level(value?: number) {
      if (value === undefined) return level as never;
      level = value;
      return logger as never;
    },
    error(...args: readonly unknown[]) {
      warnings.push(`error: ${message(args)}`);
      return logger;
    },
    warn(...args: readonly unknown[]) {
      warnings.push(message(args));
      return logger;
    },
    info() {
      return logger;
    },
    debug() {
      return logger;
    },
  };
  return logger;
}

/** Where a spec names a URL (`url` anywhere: data sources, image marks), as JSON paths. */
export function findUrls(spec: unknown, path = '$'): string[] {
  if (Array.isArray(spec)) return spec.flatMap((v, i) => findUrls(v, `${path}[${i}]`));
  if (spec === null || typeof spec !== 'object') return [];
  return Object.entries(spec as Record<string, unknown>).flatMap(([key, value]) =>
    key === 'url' ? [`${path}.url = ${JSON.stringify(value)}`] : findUrls(value, `${path}.${key}`),
  );
}

/** Vega-Lite → Vega with the figure defaults; throws when the spec names a URL. */
export function compileFigure(spec: object): CompiledFigure {
  const urls = findUrls(spec);
  if (urls.length > 0) throw new FigureRenderError(`figures render offline from inline data (data.values), but this spec loads from a URL: ${urls.join('; ')}`);
  const warnings: string[] = [];
  // A copy: Vega tags the inline data objects it ingests, and the caller's spec stays as it was.
  const copy = structuredClone(spec) as TopLevelSpec;
  const config = { ...FIGURE_CONFIG, ...(copy.config ?? {}), font: FIGURE_FONT };
  let compiled: vega.Spec;
  try {
    compiled = compile({ ...copy, config } as TopLevelSpec, { logger: collectingLogger(warnings) as never }).spec as vega.Spec;
  } catch (error) {
    throw new FigureRenderError(`figure spec does not compile with Vega-Lite: ${(error as Error).message}`);
  }
  const vegaUrls = findUrls(compiled);
  if (vegaUrls.length > 0) throw new FigureRenderError(`figures render offline from inline data, but the compiled spec loads from a URL: ${vegaUrls.join('; ')}`);
  return { vega: compiled, warnings };
}

function refuse(uri: string): Promise<never> {
  return Promise.reject(new FigureRenderError(`figures render offline: refused to load ${JSON.stringify(uri)}`));
}

/** A vega loader that loads nothing. */
export const OFFLINE_LOADER: vega.Loader = {
  load: (uri) => refuse(uri),
  sanitize: (uri) => refuse(uri),
  http: (uri) => refuse(uri),
  file: (filename) => refuse(filename),
};

export interface RenderOptions {
  /** Called with each warning of Vega-Lite or Vega; default: console.warn. */
  readonly onWarning?: (message: string) => void;
}

export interface RenderedFigure {
  readonly svg: string;
  readonly png: Buffer;
}

/** The SVG of a Vega-Lite spec, rendered headlessly. */
export async function renderSvg(spec: object, options: RenderOptions = {}): Promise<string> {
  const onWarning = options.onWarning ?? ((m: string) => console.warn(`figure: ${m}`));
  const { vega: compiled, warnings } = compileFigure(spec);
  installTextMetrics();
  const viewWarnings: string[] = [];
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', loader: OFFLINE_LOADER, logger: collectingLogger(viewWarnings) as never });
  try {
    const svg = await view.toSVG();
    const failed = viewWarnings.filter((w) => /loading failed|ingestion failed|^error:/i.test(w));
    if (failed.length > 0) throw new FigureRenderError(`figure did not render: ${failed.join('; ')}`);
    for (const warning of [...warnings, ...viewWarnings]) onWarning(warning);
    return svg;
  } finally {
    view.finalize();
  }
}

/** An SVG rasterised with the figure fonts (no system fonts), on white, at `scale`. */
export function svgToPng(svg: string, scale = PNG_SCALE): Buffer {
  const files = figureFontFiles();
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: {
      fontFiles: [files.regular, files.bold, files.oblique, files.boldOblique],
      loadSystemFonts: false,
      defaultFontFamily: files.family,
      sansSerifFamily: files.family,
      serifFamily: files.family,
      monospaceFamily: files.family,
    },
  });
  return resvg.render().asPng();
}

/** Width and height of a PNG in pixels (from its IHDR chunk). */
export function pngSize(png: Buffer): { width: number; height: number } {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (png.length < 24 || !png.subarray(0, 8).equals(signature) || png.toString('latin1', 12, 16) !== 'IHDR') throw new FigureRenderError('not a PNG');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** A Vega-Lite spec as SVG and as PNG (2× the SVG's size, white background). */
export async function renderFigure(spec: object, options: RenderOptions = {}): Promise<RenderedFigure> {
  const svg = await renderSvg(spec, options);
  return { svg, png: svgToPng(svg) };
}

export interface FigurePaths {
  readonly svg: string;
  readonly png: string;
  /** The Vega-Lite spec, for restyling. */
  readonly spec: string;
}

/** Renders `spec` and writes `<name>.svg`, `<name>.png` and `<name>.vl.json` into `dir`. */
export async function writeFigure(dir: string, name: string, spec: object, options: RenderOptions = {}): Promise<FigurePaths> {
  if (name === '' || /[/\\]/.test(name) || name === '.' || name === '..') throw new FigureRenderError(`figure name must be a plain file name, got ${JSON.stringify(name)}`);
  const { svg, png } = await renderFigure(spec, options);
  mkdirSync(dir, { recursive: true });
  const paths = { svg: join(dir, `${name}.svg`), png: join(dir, `${name}.png`), spec: join(dir, `${name}.vl.json`) };
  writeFileSync(paths.svg, svg);
  writeFileSync(paths.png, png);
  writeFileSync(paths.spec, `${JSON.stringify(spec, null, 2)}\n`);
  return paths;
}
