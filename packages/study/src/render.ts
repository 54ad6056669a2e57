import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import PDFDocument from 'pdfkit';
import SVGtoPDF from 'svg-to-pdfkit';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** A figure in the three forms a paper needs: vector SVG and PDF, raster PNG. */
export interface RenderedFigure {
  svg: string;
  /** PNG at PNG_ZOOM times the SVG's size. */
  png: Buffer;
  /** One page of the SVG's size (1 SVG px = 1 pt), text embedded as DejaVu Sans. */
  pdf: Buffer;
  /** SVG size in px. */
  width: number;
  height: number;
}

/** The PNG is rasterised at this multiple of the SVG's size (about 150 dpi for a column-wide figure). */
export const PNG_ZOOM = 2;

/** The font every figure is laid out, rasterised and embedded with (from the dejavu-fonts-ttf package). */
export const FIGURE_FONT = 'DejaVu Sans';

const fontFiles = (() => {
  let cached: { regular: string; bold: string } | undefined;
  return () => {
    if (!cached) {
      const dir = join(
        dirname(createRequire(import.meta.url).resolve('dejavu-fonts-ttf/package.json')),
        'ttf',
      );
      cached = { regular: join(dir, 'DejaVuSans.ttf'), bold: join(dir, 'DejaVuSans-Bold.ttf') };
    }
    return cached;
  };
})();

const isBold = (weight: unknown) =>
  weight === 'bold' || weight === 'bolder' || (typeof weight === 'number' && weight >= 600);

let metricsDoc: PDFKit.PDFDocument | undefined;

/** Vega's text measuring hook: the width in px of one line of a text item. */
type TextWidth = (
  item: { fontSize?: number; fontWeight?: unknown; limit?: number },
  text?: unknown,
) => number;

/**
 * Vega lays out text (legend widths, title centring, label overlap) with a
 * measuring function; without a canvas it estimates 0.8 em per character, which
 * leaves legends far too wide. This measures with the real DejaVu Sans metrics,
 * through Vega's documented `textMetrics.width` hook.
 */
function useFontMetrics(): void {
  if (metricsDoc) return;
  const { regular, bold } = fontFiles();
  const doc = new PDFDocument({ autoFirstPage: false });
  doc.registerFont('regular', regular).registerFont('bold', bold);
  metricsDoc = doc;
  const metrics = (vega as unknown as { textMetrics: { width: TextWidth } }).textMetrics;
  metrics.width = (item, text) => {
    const size = item.fontSize ?? 11;
    const s = text == null ? '' : String(text).trim();
    if (size <= 0 || !s) return 0;
    const width = doc
      .font(isBold(item.fontWeight) ? 'bold' : 'regular')
      .fontSize(size)
      .widthOfString(s);
    const limit = Number(item.limit ?? 0);
    return limit > 0 ? Math.min(width, limit) : width;
  };
}

/** Vega-Lite spec -> Vega spec -> SVG; `patch` may adjust the compiled Vega spec first. */
export async function renderSvg(
  spec: TopLevelSpec,
  patch?: (compiled: vega.Spec) => void,
): Promise<string> {
  useFontMetrics();
  const compiled = compile(spec).spec as vega.Spec;
  patch?.(compiled);
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The `width` and `height` attributes of an SVG's root element, in px. */
export function svgSize(svg: string): { width: number; height: number } {
  const root = /<svg\b[^>]*>/.exec(svg)?.[0] ?? '';
  const num = (name: string) => Number(new RegExp(`\\b${name}="([\\d.]+)"`).exec(root)?.[1]);
  return { width: num('width'), height: num('height') };
}

/** Rasterises an SVG with resvg at PNG_ZOOM, with the figure font. */
export function svgToPng(svg: string): Buffer {
  const { regular, bold } = fontFiles();
  return new Resvg(svg, {
    fitTo: { mode: 'zoom', value: PNG_ZOOM },
    font: { loadSystemFonts: false, fontFiles: [regular, bold], defaultFontFamily: FIGURE_FONT },
  })
    .render()
    .asPng();
}

/**
 * A one-page vector PDF of an SVG (pdfkit + svg-to-pdfkit), text as embedded,
 * subset DejaVu Sans. A dash array with a zero gap (Vega's solid line in a dash
 * scale) means a solid line in SVG; PDFKit refuses zero lengths, so such arrays
 * are dropped first.
 */
export async function svgToPdf(svg: string, title: string): Promise<Buffer> {
  const { width, height } = svgSize(svg);
  const { regular, bold } = fontFiles();
  const doc = new PDFDocument({
    size: [width, height],
    margin: 0,
    info: { Title: title, Creator: 'Contrast', Producer: 'PDFKit' },
  });
  doc.registerFont('regular', regular).registerFont('bold', bold);
  const chunks: Buffer[] = [];
  doc.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((ok, fail) => {
    doc.on('end', ok);
    doc.on('error', fail);
  });
  const solid = svg.replace(/\sstroke-dasharray="([^"]*)"/g, (attr, list: string) =>
    list.split(/[\s,]+/).some((v) => Number(v) === 0) ? '' : attr,
  );
  SVGtoPDF(doc, solid, 0, 0, {
    width,
    height,
    assumePt: true,
    fontCallback: (_family: string, bold_: boolean) => (bold_ ? 'bold' : 'regular'),
  });
  doc.end();
  await done;
  return Buffer.concat(chunks);
}

/** Renders a Vega-Lite spec to SVG, PNG and PDF. */
export async function renderFigure(
  spec: TopLevelSpec,
  title: string,
  patch?: (compiled: vega.Spec) => void,
): Promise<RenderedFigure> {
  const svg = await renderSvg(spec, patch);
  return { svg, png: svgToPng(svg), pdf: await svgToPdf(svg, title), ...svgSize(svg) };
}
