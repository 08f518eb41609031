import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { svgToPng } from './render.js';

/*
The report as two files in one folder: report.md (GitHub Markdown; figures are links to their
PNGs, relative to the folder) and report.html (one self-contained file: inline CSS, the figures'
SVGs inline, no scripts, fonts or anything else to load; a Content-Security-Policy says so to the
browser as well).
*/

export type Cell = string | number | null;

export interface ReportTable {
  readonly caption?: string;
  readonly columns: readonly string[];
  readonly rows: ReadonlyArray<readonly Cell[]>;
}

export interface ReportFigure {
  /** File name stem, e.g. 'compare-bn-cost' or 'compare-bn/plots/compare-bn-cost'. */
  readonly name: string;
  readonly caption: string;
  /** The Vega-Lite spec (kept for callers; the document draws `svg`). */
  readonly spec?: object;
  /** The rendered SVG, inlined into the HTML. */
  readonly svg: string;
  /**
   * The PNG the Markdown links to. Without it, writeReport rasterises `svg` to
   * `plots/<name>.png` in the report folder.
   */
  readonly pngPath?: string;
}

export interface ReportSection {
  /** Anchor of the section in the HTML (made unique and URL-safe). */
  readonly id: string;
  readonly title: string;
  readonly paragraphs: readonly string[];
  readonly tables: readonly ReportTable[];
  readonly figures: readonly ReportFigure[];
}

export interface ReportDocument {
  readonly title: string;
  readonly subtitle?: string;
  /** ISO 8601 time the report was made. */
  readonly generatedAt: string;
  readonly sections: readonly ReportSection[];
  readonly notes: readonly string[];
}

export interface ReportPaths {
  readonly markdownPath: string;
  readonly htmlPath: string;
}

export const REPORT_FILES = { markdown: 'report.md', html: 'report.html' } as const;

// ---------------------------------------------------------------------------------------------
// Cells and tables.

/** How a table cell reads: '—' for null, numbers as JavaScript prints them. */
export function formatCell(cell: Cell | undefined): string {
  if (cell === null || cell === undefined) return '—';
  return typeof cell === 'number' ? String(cell) : cell;
}

const NUMERIC = /^[-+−]?(\d[\d,]*)?(\.\d+)?([eE][-+]?\d+)?\s?(%|×|x|s|ms)?$/;

/** Columns whose cells are all numbers (or '—'), at least one: right-aligned. */
function numericColumns(columns: readonly string[], rows: ReadonlyArray<readonly Cell[]>): boolean[] {
  return columns.map((_, c) => {
    let numbers = 0;
    for (const row of rows) {
      const cell = row[c];
      if (cell === null || cell === undefined || cell === '—' || cell === '') continue;
      if (typeof cell === 'number' || (NUMERIC.test(cell.trim()) && /\d/.test(cell))) numbers++;
      else return false;
    }
    return numbers > 0;
  });
}

function checkRows(columns: readonly string[], rows: ReadonlyArray<readonly Cell[]>): void {
  rows.forEach((row, r) => {
    if (row.length > columns.length) throw new RangeError(`table row ${r + 1} has ${row.length} cells for ${columns.length} columns`);
  });
}

function markdownCell(text: string): string {
  return escapeMarkdownText(text).replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/**
 * A GitHub pipe table, its columns padded so that it also reads in a terminal; numeric columns
 * right-aligned; null as '—'; `|` escaped.
 */
export function renderMarkdownTable(columns: readonly string[], rows: ReadonlyArray<readonly Cell[]>): string {
  checkRows(columns, rows);
  const numeric = numericColumns(columns, rows);
  const header = columns.map((c) => markdownCell(c));
  const body = rows.map((row) => columns.map((_, c) => markdownCell(formatCell(row[c]))));
  const width = (text: string) => [...text].length;
  const widths = header.map((h, c) => Math.max(3, width(h), ...body.map((r) => width(r[c]))));
  const pad = (text: string, c: number) => (numeric[c] ? ' '.repeat(widths[c] - width(text)) + text : text + ' '.repeat(widths[c] - width(text)));
  const line = (cells: readonly string[]) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = `| ${widths.map((w, c) => (numeric[c] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Escaping.

/** Text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Markdown text that must not turn into HTML: tag-like `<` and entity-like `&` escaped. */
function escapeMarkdownText(text: string): string {
  return text.replace(/&(?=#?\w+;)/g, '&amp;').replace(/<(?=[A-Za-z/!?])/g, '&lt;');
}

function escapeMarkdownAlt(text: string): string {
  return escapeMarkdownText(text).replace(/([[\]])/g, '\\$1').replace(/\r?\n/g, ' ');
}

/** A relative link target: `/` separators, each segment percent-encoded. */
function linkTarget(path: string): string {
  return path.split(sep).join('/').split('/').map((segment) => (segment === '..' || segment === '.' ? segment : encodeURIComponent(segment))).join('/');
}

// ---------------------------------------------------------------------------------------------
// Ids and SVG.

class Ids {
  private readonly used = new Set<string>(['top', 'contents', 'notes']);

  allocate(wanted: string, fallback: string): string {
    const base = wanted.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || fallback;
    let id = /^[A-Za-z]/.test(base) ? base : `${fallback}-${base}`;
    for (let n = 2; this.used.has(id); n++) id = `${/^[A-Za-z]/.test(base) ? base : `${fallback}-${base}`}-${n}`;
    this.used.add(id);
    return id;
  }
}

/**
 * An SVG ready to sit inside an HTML page beside others: XML prolog, doctype, comments and
 * anything scriptable removed; its ids (gradients, clip paths) prefixed so that two figures'
 * `gradient_0` do not collide; labelled for screen readers. Null when it is not an SVG.
 */
export function inlineSvg(svg: string, idPrefix: string, label: string): string | null {
  let text = svg
    .replace(/<\?xml[\s\S]*?\?>/g, '')
    .replace(/<!DOCTYPE[\s\S]*?>/gi, '')
    .replace(/<!--[\s\S]*?-->/g, '')
    .trim();
  if (!/^<svg[\s>]/.test(text) || !/<\/svg>$/.test(text)) return null;
  text = text
    .replace(/<script[\s\S]*?<\/script\s*>/gi, '')
    .replace(/<script[^>]*\/>/gi, '')
    .replace(/<foreignObject[\s\S]*?<\/foreignObject\s*>/gi, '')
    .replace(/\son[a-z]+\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi, '')
    .replace(/\s(?:xlink:)?href\s*=\s*("|')\s*javascript:[^"']*\1/gi, '')
    .replace(/\sid="([^"]+)"/g, (_, id: string) => ` id="${idPrefix}-${id}"`)
    .replace(/url\(\s*#([^)\s]+)\s*\)/g, (_, id: string) => `url(#${idPrefix}-${id})`)
    .replace(/\s((?:xlink:)?href)="#([^"]+)"/g, (_, attr: string, id: string) => ` ${attr}="#${idPrefix}-${id}"`);
  const open = /^<svg[^>]*>/.exec(text)![0];
  let root = open;
  if (!/\srole=/.test(root)) root = root.replace(/^<svg/, '<svg role="img"');
  if (!/\saria-label=/.test(root)) root = root.replace(/^<svg/, `<svg aria-label="${escapeHtml(label)}"`);
  return root + text.slice(open.length);
}

// ---------------------------------------------------------------------------------------------
// Markdown.

function markdown(report: ReportDocument, pngLinks: ReadonlyArray<readonly string[]>): string {
  const out: string[] = [`# ${escapeMarkdownText(report.title)}`, ''];
  if (report.subtitle) out.push(`_${escapeMarkdownText(report.subtitle)}_`, '');
  out.push(`Generated ${escapeMarkdownText(report.generatedAt)}.`, '');
  let figureNumber = 0;
  report.sections.forEach((section, s) => {
    out.push(`## ${escapeMarkdownText(section.title)}`, '');
    for (const paragraph of section.paragraphs) out.push(escapeMarkdownText(paragraph), '');
    for (const table of section.tables) {
      if (table.caption) out.push(`**${escapeMarkdownText(table.caption)}**`, '');
      out.push(renderMarkdownTable(table.columns, table.rows), '');
    }
    section.figures.forEach((figure, f) => {
      figureNumber++;
      out.push(`![${escapeMarkdownAlt(figure.caption)}](${pngLinks[s][f]})`, '', `_Figure ${figureNumber}. ${escapeMarkdownText(figure.caption)}_`, '');
    });
  });
  if (report.notes.length > 0) {
    out.push('## Notes', '');
    for (const note of report.notes) out.push(`- ${escapeMarkdownText(note)}`);
    out.push('');
  }
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

// ---------------------------------------------------------------------------------------------
// HTML.

const CSS = `
:root { color-scheme: light; --text: #1d1d1f; --muted: #5f6368; --rule: #d9dce1; --accent: #2f5d8c; --stripe: #f6f7f9; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: #fff; color: var(--text); font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
header h1 { font-size: 1.9rem; line-height: 1.25; margin: 0 0 0.4rem; }
.subtitle { font-size: 1.08rem; color: var(--muted); margin: 0 0 0.4rem; }
.generated { font-size: 0.88rem; color: var(--muted); margin: 0; }
h2 { font-size: 1.4rem; margin: 2.6rem 0 0.8rem; padding-bottom: 0.3rem; border-bottom: 1px solid var(--rule); }
nav.toc { margin: 1.8rem 0 0; padding: 0.9rem 1.2rem; background: var(--stripe); border: 1px solid var(--rule); border-radius: 6px; }
nav.toc h2 { font-size: 1rem; margin: 0 0 0.4rem; padding: 0; border: 0; }
nav.toc ol { margin: 0; padding-left: 1.4rem; }
nav.toc li { margin: 0.15rem 0; }
a { color: var(--accent); }
p { margin: 0 0 0.9rem; }
.table-wrap { overflow-x: auto; margin: 1.1rem 0 1.4rem; }
table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; min-width: 50%; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 0.45rem; }
th, td { padding: 0.38rem 0.75rem; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #aeb4bd; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--stripe); }
.num { text-align: right; white-space: nowrap; }
figure { margin: 1.6rem 0 2rem; break-inside: avoid; }
figure .chart { overflow-x: auto; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 0.9rem; color: var(--muted); margin-top: 0.5rem; text-align: center; }
figcaption .label { font-weight: 600; color: var(--text); }
.missing { color: #a33; font-style: italic; }
ul.notes { padding-left: 1.3rem; color: var(--muted); }
footer { margin-top: 3rem; font-size: 0.85rem; color: var(--muted); }
@media print { main { max-width: none; padding: 0; } nav.toc { display: none; } h2 { break-after: avoid; } }
`.trim();

/** No scripts, no network: the browser refuses anything but the inline styles. */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

function htmlTable(table: ReportTable): string {
  checkRows(table.columns, table.rows);
  const numeric = numericColumns(table.columns, table.rows);
  const cls = (c: number) => (numeric[c] ? ' class="num"' : '');
  const head = table.columns.map((column, c) => `<th scope="col"${cls(c)}>${escapeHtml(column)}</th>`).join('');
  const body = table.rows.map((row) => `<tr>${table.columns.map((_, c) => `<td${cls(c)}>${escapeHtml(formatCell(row[c]))}</td>`).join('')}</tr>`).join('\n');
  const caption = table.caption ? `<caption>${escapeHtml(table.caption)}</caption>` : '';
  return `<div class="table-wrap"><table>${caption}<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody></table></div>`;
}

function html(report: ReportDocument): string {
  const ids = new Ids();
  const sectionIds = report.sections.map((s, i) => ids.allocate(s.id, `section-${i + 1}`));
  let figureNumber = 0;
  const sections = report.sections.map((section, s) => {
    const parts = [`<section id="${sectionIds[s]}">`, `<h2>${escapeHtml(section.title)}</h2>`];
    for (const paragraph of section.paragraphs) parts.push(`<p>${escapeHtml(paragraph)}</p>`);
    for (const table of section.tables) parts.push(htmlTable(table));
    for (const figure of section.figures) {
      figureNumber++;
      const id = ids.allocate(`figure-${figure.name}`, 'figure');
      const svg = inlineSvg(figure.svg, id, figure.caption);
      parts.push(
        `<figure id="${id}">`,
        svg === null ? `<p class="missing">(figure ${escapeHtml(figure.name)} could not be drawn)</p>` : `<div class="chart">${svg}</div>`,
        `<figcaption><span class="label">Figure ${figureNumber}.</span> ${escapeHtml(figure.caption)}</figcaption>`,
        '</figure>',
      );
    }
    parts.push('</section>');
    return parts.join('\n');
  });
  const toc = [
    ...report.sections.map((section, s) => `<li><a href="#${sectionIds[s]}">${escapeHtml(section.title)}</a></li>`),
    ...(report.notes.length > 0 ? ['<li><a href="#notes">Notes</a></li>'] : []),
  ];
  const notes = report.notes.length > 0 ? `<section id="notes">\n<h2>Notes</h2>\n<ul class="notes">\n${report.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('\n')}\n</ul>\n</section>` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="bnmlp">
<title>${escapeHtml(report.title)}</title>
<style>
${CSS}
</style>
</head>
<body>
<main id="top">
<header>
<h1>${escapeHtml(report.title)}</h1>
${report.subtitle ? `<p class="subtitle">${escapeHtml(report.subtitle)}</p>\n` : ''}<p class="generated">Generated <time datetime="${escapeHtml(report.generatedAt)}">${escapeHtml(report.generatedAt)}</time></p>
</header>
${toc.length > 0 ? `<nav class="toc" id="contents" aria-label="Contents">\n<h2>Contents</h2>\n<ol>\n${toc.join('\n')}\n</ol>\n</nav>` : ''}
${sections.join('\n')}
${notes}
<footer>Written by bnmlp. The figures are inline SVG; report.md links the same figures as PNG files.</footer>
</main>
</body>
</html>
`;
}

// ---------------------------------------------------------------------------------------------

function figureFileName(name: string): string {
  const parts = name.split(/[/\\]/);
  if (name === '' || isAbsolute(name) || parts.some((p) => p === '' || p === '.' || p === '..')) throw new RangeError(`figure name must be a relative path without '.' or '..', got ${JSON.stringify(name)}`);
  return join(...parts);
}

/**
 * Writes `report.md` and `report.html` into `dir` (made if missing). Figures with a `pngPath` are
 * linked from the Markdown relative to `dir`; the others are rasterised from their SVG into
 * `dir/plots/<name>.png` first.
 */
export function writeReport(dir: string, report: ReportDocument): ReportPaths {
  mkdirSync(dir, { recursive: true });
  const pngLinks = report.sections.map((section) =>
    section.figures.map((figure) => {
      let png = figure.pngPath;
      if (png === undefined) {
        png = join(dir, 'plots', `${figureFileName(figure.name)}.png`);
        if (inlineSvg(figure.svg, 'x', '') !== null) {
          mkdirSync(dirname(png), { recursive: true });
          writeFileSync(png, svgToPng(figure.svg));
        }
      }
      const rel = relative(dir, png);
      return linkTarget(isAbsolute(rel) ? png : rel);
    }),
  );
  const paths = { markdownPath: join(dir, REPORT_FILES.markdown), htmlPath: join(dir, REPORT_FILES.html) };
  writeFileSync(paths.markdownPath, markdown(report, pngLinks));
  writeFileSync(paths.htmlPath, html(report));
  return paths;
}
