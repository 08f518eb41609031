import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { escapeHtml, inlineSvg, renderMarkdownTable, writeReport, type ReportDocument } from './document.js';
import { confusionFigure, searchScatterFigure } from './figures.js';
import { pngSize, renderFigure } from './render.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bnmlp-report-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const SVG = (text: string) => `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100"><defs><linearGradient id="gradient_0"><stop offset="0" stop-color="#000"/></linearGradient></defs><rect width="200" height="100" fill="url(#gradient_0)"/><text x="10" y="50">${text}</text></svg>`;

const EVIL = '<script>alert(1)</script> & "quotes" \'too\'';

function sampleReport(overrides: Partial<ReportDocument> = {}): ReportDocument {
  return {
    title: 'bnmlp: the model report, reproduced',
    subtitle: 'DD2424 Assignment 3 — k-layer MLP with BN',
    generatedAt: '2025-01-02T03:04:05.000Z',
    sections: [
      {
        id: 'summary',
        title: 'Summary: ours beside the report',
        paragraphs: ['Each figure of ours beside the report\'s.', 'A second paragraph.'],
        tables: [{ caption: "Our figures and the report's", columns: ['measure', 'ours', 'report'], rows: [['3-layer with BN', '53.12%', '53.45%'], ['best | network', 0.5, null]] }],
        figures: [{ name: 'summary-test-accuracy', caption: 'Test accuracy', spec: {}, svg: SVG('one') }],
      },
      {
        id: 'compare-bn',
        title: 'BN vs no BN',
        paragraphs: [],
        tables: [],
        figures: [{ name: 'compare-bn/plots/compare-bn-cost', caption: 'Cost per epoch', spec: {}, svg: SVG('two'), pngPath: '' }],
      },
    ],
    notes: ['Written by a test.'],
    ...overrides,
  };
}

describe('renderMarkdownTable', () => {
  test('a padded GitHub pipe table; numbers right-aligned; null as —; pipes escaped', () => {
    expect(renderMarkdownTable(['run', 'epochs', 'acc'], [['with BN', 20, '53.10%'], ['a|b', 3, null]])).toBe(
      ['| run     | epochs |    acc |', '| ------- | -----: | -----: |', '| with BN |     20 | 53.10% |', '| a\\|b    |      3 |      — |'].join('\n'),
    );
  });

  test('short rows padded, long rows refused, text columns left', () => {
    expect(renderMarkdownTable(['a', 'b'], [['x']])).toBe('| a   | b   |\n| --- | --- |\n| x   | —   |');
    expect(() => renderMarkdownTable(['a'], [['x', 'y']])).toThrow(/2 cells for 1 columns/);
  });
});

describe('inlineSvg', () => {
  test('prefixes ids and their references, labels the root', () => {
    const svg = inlineSvg(`<?xml version="1.0"?>\n${SVG('x')}`, 'figure-a', 'A & B')!;
    expect(svg.startsWith('<svg aria-label="A &amp; B" role="img"')).toBe(true);
    expect(svg).toContain('id="figure-a-gradient_0"');
    expect(svg).toContain('fill="url(#figure-a-gradient_0)"');
    expect(svg).not.toContain('"gradient_0"');
  });

  test('drops scripts, event handlers and foreign objects; refuses what is not an SVG', () => {
    const svg = inlineSvg('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script><foreignObject><div>x</div></foreignObject><a xlink:href="javascript:alert(3)"><rect onclick=\'x()\' width="1" height="1"/></a></svg>', 'p', 'l')!;
    expect(svg).not.toMatch(/alert|onload|onclick|script|foreignObject|javascript/i);
    expect(svg).toContain('<rect width="1" height="1"/>');
    expect(inlineSvg('<div>no</div>', 'p', 'l')).toBeNull();
    expect(inlineSvg('', 'p', 'l')).toBeNull();
  });
});

describe('writeReport', () => {
  test('Markdown: headings, tables, figures as relative PNG links (written when missing)', () => {
    const dir = tempDir();
    const png = join(dir, 'compare-bn', 'plots', 'compare-bn-cost.png');
    mkdirSync(join(dir, 'compare-bn', 'plots'), { recursive: true });
    writeFileSync(png, 'png');
    const report = sampleReport();
    const sections = report.sections.map((s, i) => (i === 1 ? { ...s, figures: [{ ...s.figures[0], pngPath: png }] } : s));
    const { markdownPath, htmlPath } = writeReport(dir, { ...report, sections });
    expect(markdownPath).toBe(join(dir, 'report.md'));
    expect(htmlPath).toBe(join(dir, 'report.html'));
    const md = readFileSync(markdownPath, 'utf8');
    expect(md.startsWith('# bnmlp: the model report, reproduced\n\n_DD2424 Assignment 3 — k-layer MLP with BN_\n')).toBe(true);
    expect(md).toContain('\n## Summary: ours beside the report\n\nEach figure of ours beside the report\'s.\n\nA second paragraph.\n');
    expect(md).toContain("**Our figures and the report's**\n\n| measure");
    expect(md).toContain('| best \\| network |');
    expect(md).toContain('![Test accuracy](plots/summary-test-accuracy.png)');
    expect(md).toContain('![Cost per epoch](compare-bn/plots/compare-bn-cost.png)');
    expect(md).toContain('_Figure 2. Cost per epoch_');
    expect(md).toContain('## Notes\n\n- Written by a test.\n');
    // The figure without a PNG got one, rasterised from its SVG at 2×.
    expect(pngSize(readFileSync(join(dir, 'plots', 'summary-test-accuracy.png')))).toEqual({ width: 400, height: 200 });
  });

  test('Markdown: link targets percent-encoded; tag-like text escaped', () => {
    const dir = tempDir();
    const report = sampleReport({ title: 'A <b>bold</b> claim & more' });
    const sections = [{ ...report.sections[0], figures: [{ name: 'with space', caption: 'a [bracket] <img src=x>', svg: SVG('s') }] }];
    const md = readFileSync(writeReport(dir, { ...report, sections }).markdownPath, 'utf8');
    expect(md).toContain('# A &lt;b>bold&lt;/b> claim & more');
    expect(md).toContain('![a \\[bracket\\] &lt;img src=x>](plots/with%20space.png)');
    expect(existsSync(join(dir, 'plots', 'with space.png'))).toBe(true);
  });

  test('HTML: one self-contained file, SVGs inline, a table of contents that resolves', () => {
    const dir = tempDir();
    const html = readFileSync(writeReport(dir, sampleReport()).htmlPath, 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).toContain('Content-Security-Policy');
    expect(html.match(/<svg[\s>]/g)).toHaveLength(2);
    expect(html).toContain('<figcaption><span class="label">Figure 1.</span> Test accuracy</figcaption>');
    // Nothing to fetch: no img/link/script/iframe, no src, no url() but fragment references.
    expect(html).not.toMatch(/<(img|link|script|iframe|object|embed)\b/i);
    expect(html).not.toMatch(/\ssrc=/i);
    expect(html).not.toMatch(/@import|@font-face/);
    expect(html.match(/url\((?!#)/g)).toBeNull();
    const urls = [...html.matchAll(/https?:\/\/[^\s"')]+/g)].map((m) => m[0]);
    expect(new Set(urls)).toEqual(new Set(['http://www.w3.org/2000/svg']));
    // Two figures' gradient_0 kept apart.
    expect(html).toContain('id="figure-summary-test-accuracy-gradient_0"');
    expect(html).toContain('id="figure-compare-bn-plots-compare-bn-cost-gradient_0"');
    const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(ids).size).toBe(ids.length);
    const links = [...html.matchAll(/href="#([^"]+)"/g)].map((m) => m[1]);
    expect(links).toEqual(['summary', 'compare-bn', 'notes']);
    for (const link of links) expect(ids).toContain(link);
    expect(html).toMatch(/<table><caption>Our figures and the report&#39;s<\/caption>/);
    expect(html).toContain('<td class="num">53.12%</td>');
    expect(html).toContain('<td class="num">—</td>');
  });

  test('HTML: everything escaped (title, subtitle, paragraphs, tables, captions, notes, ids)', () => {
    const dir = tempDir();
    const report: ReportDocument = {
      title: `Title ${EVIL}`,
      subtitle: `Subtitle ${EVIL}`,
      generatedAt: `now ${EVIL}`,
      sections: [
        {
          id: `"><script>x</script>`,
          title: `Section ${EVIL}`,
          paragraphs: [`Paragraph ${EVIL}`],
          tables: [{ caption: `Table ${EVIL}`, columns: [`col ${EVIL}`], rows: [[`cell ${EVIL}`]] }],
          figures: [{ name: 'f', caption: `Caption ${EVIL}`, svg: SVG('&amp; &lt;tag&gt;') }],
        },
        { id: 'notes', title: 'Clashes with the notes section', paragraphs: [], tables: [], figures: [] },
        { id: 'notes', title: 'And again', paragraphs: [], tables: [], figures: [] },
      ],
      notes: [`Note ${EVIL}`],
    };
    const html = readFileSync(writeReport(dir, report).htmlPath, 'utf8');
    expect(html).not.toMatch(/<script/i);
    const escaped = '&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &#39;too&#39;';
    for (const where of ['Title', 'Subtitle', 'Section', 'Paragraph', 'Table', 'col', 'cell', 'Caption', 'Note']) expect(html).toContain(`${where} ${escaped}`);
    expect(html).toContain(`<title>Title ${escaped}</title>`);
    expect(html).toContain(`<svg aria-label="Caption ${escaped}"`);
    // The SVG's own escaping is left alone (not double-escaped).
    expect(html).toContain('&amp; &lt;tag&gt;</text>');
    expect(html).toContain('<section id="script-x-script">');
    expect(html).toContain('<section id="notes-2">');
    expect(html).toContain('<section id="notes-3">');
    expect(html).toContain('<section id="notes">\n<h2>Notes</h2>');
    expect(escapeHtml(EVIL)).toBe(escaped);
  });

  test('a figure whose SVG is missing gets a note, not a broken page', () => {
    const dir = tempDir();
    const report = sampleReport();
    const html = readFileSync(writeReport(dir, { ...report, sections: [{ ...report.sections[0], figures: [{ name: 'gone', caption: 'c', svg: '' }] }] }).htmlPath, 'utf8');
    expect(html).toContain('(figure gone could not be drawn)');
    expect(() => writeReport(dir, { ...report, sections: [{ ...report.sections[0], figures: [{ name: '../up', caption: 'c', svg: SVG('x') }] }] })).toThrow(/relative path/);
  });

  test('real figures side by side: each keeps its own gradient', async () => {
    const dir = tempDir();
    const scatter = await renderFigure(searchScatterFigure([{ learningRate: 0.01, lambda: 1e-4, validationAccuracy: 0.4, status: 'completed' }, { learningRate: 0.02, lambda: 1e-3, validationAccuracy: 0.45, status: 'completed' }], { title: 'scatter' }));
    const confusion = await renderFigure(confusionFigure([[5, 1], [2, 7]], ['cat', 'dog'], { title: 'confusion' }));
    const html = readFileSync(writeReport(dir, sampleReport({ sections: [{ id: 's', title: 's', paragraphs: [], tables: [], figures: [{ name: 'scatter', caption: 'a', svg: scatter.svg }, { name: 'confusion', caption: 'b', svg: confusion.svg }] }] })).htmlPath, 'utf8');
    const gradients = [...html.matchAll(/<linearGradient id="([^"]+)"/g)].map((m) => m[1]);
    expect(gradients).toHaveLength(2);
    expect(gradients[0].startsWith('figure-scatter-')).toBe(true);
    expect(gradients[1].startsWith('figure-confusion-')).toBe(true);
    for (const id of gradients) expect(html).toContain(`url(#${id})`);
  });
});
