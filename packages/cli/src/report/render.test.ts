import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { Resvg } from '@resvg/resvg-js';
import { afterAll, describe, expect, test } from 'vitest';
import { curvesFigure, type FigureSpec, type History } from './figures.js';
import { compileFigure, FIGURE_FONT, figureFontFiles, figureTextWidth, FigureRenderError, OFFLINE_LOADER, pngSize, renderFigure, svgToPng, writeFigure } from './render.js';

const history: History = Array.from({ length: 6 }, (_, i) => ({
  epoch: i + 1,
  train: { cost: 2 - 0.2 * i, loss: 1.9 - 0.2 * i, accuracy: 0.2 + 0.05 * i },
  validation: { cost: 2.1 - 0.18 * i, loss: 2 - 0.18 * i, accuracy: 0.18 + 0.045 * i },
}));

/** RGBA pixels of an 8-bit, non-interlaced PNG (grey, RGB or RGBA), enough for resvg's output. */
function decodePng(png: Buffer): { width: number; height: number; rgba: Uint8Array } {
  const { width, height } = pngSize(png);
  const bitDepth = png[24];
  const colorType = png[25];
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType];
  if (bitDepth !== 8 || channels === undefined || png[28] !== 0) throw new Error(`unsupported PNG: depth ${bitDepth}, colour type ${colorType}`);
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    if (type === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const value = raw[y * (stride + 1) + 1 + x];
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c;
      const predictor = [0, a, b, (a + b) >> 1, Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c][filter];
      pixels[y * stride + x] = (value + predictor) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const px = pixels.subarray(i * channels, (i + 1) * channels);
    const [r, g, b] = channels >= 3 ? [px[0], px[1], px[2]] : [px[0], px[0], px[0]];
    rgba.set([r, g, b, channels === 4 ? px[3] : channels === 2 ? px[1] : 255], i * 4);
  }
  return { width, height, rgba };
}

/** Pixels in a rectangle (PNG pixels) darker than light grey. */
function darkPixels(image: { width: number; rgba: Uint8Array }, x0: number, y0: number, x1: number, y1: number): number {
  let count = 0;
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) {
      const i = (y * image.width + x) * 4;
      if (image.rgba[i] + image.rgba[i + 1] + image.rgba[i + 2] < 3 * 160) count++;
    }
  return count;
}

function svgSize(svg: string): { width: number; height: number } {
  const match = /^<svg[^>]*\swidth="(\d+(?:\.\d+)?)"[^>]*\sheight="(\d+(?:\.\d+)?)"/.exec(svg);
  if (!match) throw new Error('no SVG size');
  return { width: Number(match[1]), height: Number(match[2]) };
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('renderFigure', () => {
  test('SVG: the title and axis titles as text, set in the bundled font', async () => {
    const { svg } = await renderFigure(curvesFigure(history, { metric: 'loss', title: 'Loss & such <per> epoch' }));
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('Loss &amp; such &lt;per&gt; epoch');
    expect(svg).toContain('>epoch</text>');
    expect(svg).toContain(`font-family="${FIGURE_FONT}"`);
    expect(svg).not.toMatch(/font-family="(?!DejaVu Sans)/);
  });

  test('PNG: signature, twice the SVG size, white background, text drawn', async () => {
    const { svg, png } = await renderFigure(curvesFigure(history, { metric: 'accuracy', title: 'Accuracy per epoch of a run' }));
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const size = svgSize(svg);
    const image = decodePng(png);
    expect(image.width).toBe(Math.round(2 * size.width));
    expect(image.height).toBe(Math.round(2 * size.height));
    // Corners white and opaque.
    expect([...image.rgba.subarray(0, 4)]).toEqual([255, 255, 255, 255]);
    const last = (image.width * image.height - 1) * 4;
    expect([...image.rgba.subarray(last, last + 4)]).toEqual([255, 255, 255, 255]);
    // The title (top left, above the plot): a bold 15px line, glyphs present.
    expect(darkPixels(image, 0, 0, 600, 50)).toBeGreaterThan(1500);
    // The x axis title 'epoch' (bottom centre strip).
    expect(darkPixels(image, 0, image.height - 40, image.width, image.height)).toBeGreaterThan(150);
  });

  test('the title text changes the pixels where the title is, and nowhere else', async () => {
    const a = decodePng((await renderFigure(curvesFigure(history, { metric: 'cost', title: 'Title one' }))).png);
    const b = decodePng((await renderFigure(curvesFigure(history, { metric: 'cost', title: 'Another title' }))).png);
    expect([a.width, a.height]).toEqual([b.width, b.height]);
    const differs = (y0: number, y1: number) => {
      let n = 0;
      for (let i = y0 * a.width * 4; i < y1 * a.width * 4; i++) if (a.rgba[i] !== b.rgba[i]) n++;
      return n;
    };
    expect(differs(0, 50)).toBeGreaterThan(500);
    expect(differs(80, a.height)).toBe(0);
  });

  test('deterministic: the same spec gives the same bytes', async () => {
    const spec = curvesFigure(history, { metric: 'loss', title: 'same' });
    const [one, two] = await Promise.all([renderFigure(spec), renderFigure(spec)]);
    expect(one.svg).toBe(two.svg);
    expect(one.png.equals(two.png)).toBe(true);
  });

  test('a spec that loads data from a URL is refused with a clear error', async () => {
    const spec = { ...curvesFigure(history, { metric: 'cost', title: 'x' }), data: { url: 'https://example.org/data.json' } } as FigureSpec;
    await expect(renderFigure(spec)).rejects.toThrow(FigureRenderError);
    await expect(renderFigure(spec)).rejects.toThrow(/offline.*URL.*https:\/\/example\.org\/data\.json/);
    const image = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', data: { values: [{ a: 1 }] }, mark: 'image', encoding: { url: { value: 'file:///etc/passwd' } } } as unknown as FigureSpec;
    await expect(renderFigure(image)).rejects.toThrow(/file:\/\/\/etc\/passwd/);
    await expect(OFFLINE_LOADER.load('data.csv')).rejects.toThrow(/refused to load "data.csv"/);
    await expect(OFFLINE_LOADER.sanitize('x.png', { context: 'href' })).rejects.toThrow(FigureRenderError);
  });

  test('a spec Vega-Lite cannot compile is a FigureRenderError; warnings go to onWarning', async () => {
    expect(() => compileFigure({ mark: 'nonsense' })).toThrow(FigureRenderError);
    const warnings: string[] = [];
    const spec = { data: { values: [{ a: 1, b: 2 }] }, mark: 'point', encoding: { x: { field: 'a', type: 'quantitative' }, y: { field: 'b', type: 'quantitative' }, shape: { field: 'a', type: 'quantitative' } } };
    await renderFigure(spec, { onWarning: (m) => warnings.push(m) });
    expect(warnings.length).toBeGreaterThan(0);
  });
});

describe('fonts', () => {
  test('the font files ship in node_modules', () => {
    const files = figureFontFiles();
    for (const file of [files.regular, files.bold, files.oblique, files.boldOblique]) expect(existsSync(file)).toBe(true);
    expect(files.family).toBe('DejaVu Sans');
  });

  test.each([
    ['normal', 'epoch', 12],
    ['bold', 'Best recipe: cost per epoch', 15],
    ['normal', 'cost (loss + λ‖W‖²)', 12],
  ])('text widths for vega match what resvg draws (%s %s)', (weight, text, size) => {
    const files = figureFontFiles();
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="600" height="40"><text x="10" y="30" font-family="${FIGURE_FONT}" font-weight="${weight}" font-size="${size}">${text}</text></svg>`;
    const ink = new Resvg(svg, { font: { fontFiles: [files.regular, files.bold], loadSystemFonts: false, defaultFontFamily: files.family } }).getBBox()!.width;
    const advance = figureTextWidth({ fontSize: size, fontWeight: weight }, text);
    // The advance width is the ink width plus the side bearings of the first and last glyph.
    expect(advance).toBeGreaterThanOrEqual(ink);
    expect(advance - ink).toBeLessThan(0.3 * size);
  });

  test('svgToPng draws text without any system font', () => {
    const png = svgToPng('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="30"><text x="4" y="22" font-family="No Such Font" font-size="20">Hello</text></svg>', 1);
    const image = decodePng(png);
    expect([image.width, image.height]).toEqual([100, 30]);
    expect(darkPixels(image, 0, 0, 100, 30)).toBeGreaterThan(60);
  });
});

describe('writeFigure', () => {
  test('writes <name>.svg, .png and .vl.json and returns their paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bnmlp-figure-'));
    dirs.push(dir);
    const spec = curvesFigure(history, { metric: 'cost', title: 'files' });
    const paths = await writeFigure(join(dir, 'plots'), 'cost', spec);
    expect(paths).toEqual({ svg: join(dir, 'plots', 'cost.svg'), png: join(dir, 'plots', 'cost.png'), spec: join(dir, 'plots', 'cost.vl.json') });
    expect(readFileSync(paths.svg, 'utf8')).toContain('files');
    expect(pngSize(readFileSync(paths.png)).width).toBeGreaterThan(900);
    expect(JSON.parse(readFileSync(paths.spec, 'utf8'))).toEqual(spec);
    await expect(writeFigure(dir, '../escape', spec)).rejects.toThrow(/plain file name/);
  });
});
