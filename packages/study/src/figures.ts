import type * as vega from 'vega';
import type { TopLevelSpec } from 'vega-lite';
import { FIGURE_FONT } from './render.js';

/**
 * Series styles that survive grayscale printing: each series has its own colour
 * (Okabe & Ito's colour-blind-safe palette, yellow left out: too pale on white),
 * marker and dash pattern. The three lists have different lengths (8, 7, 6), so
 * the combination repeats only after 42 series (markers and dashes alone).
 */
export const PALETTE = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#000000',
  '#999999',
];

/** Filled markers as SVG paths in Vega's unit box (scaled by sqrt(size) / 2). */
export const MARKERS = [
  'M-0.9,0A0.9,0.9,0,1,1,0.9,0A0.9,0.9,0,1,1,-0.9,0Z', // circle
  'M-0.8,-0.8H0.8V0.8H-0.8Z', // square
  'M0,-1.05L1,0.75H-1Z', // triangle up
  'M0,-1.1L1,0L0,1.1L-1,0Z', // diamond
  'M0,1.05L1,-0.75H-1Z', // triangle down
  'M-0.33,-1H0.33V-0.33H1V0.33H0.33V1H-0.33V0.33H-1V-0.33H-0.33Z', // plus
  'M1.05,0L-0.75,1V-1Z', // triangle right
];

/** Dash patterns in px ([] = solid). */
export const DASHES = [[], [6, 3], [2, 2], [9, 3, 2, 3], [14, 4], [4, 2, 1, 2, 1, 2]];

/** Marker area in px². */
export const MARKER_SIZE = 56;

/** A legend symbol: a short line through the marker, as in the plot. */
const legendSymbol = (marker: string) => `M-2.9,0H-1.25M1.25,0H2.9${marker}`;

/** The series-distinguishing field of a figure: its title and its values in order. */
export interface StyleKey {
  field: string;
  title: string;
  domain: string[];
}

type Channel = Record<string, unknown>;

/** Colour, dash, marker and legend-symbol encodings for one key (constant styles without one). */
function styles(key: StyleKey | undefined): {
  color: Channel;
  strokeDash: Channel;
  shape: Channel;
  legend?: Channel;
} {
  if (!key || key.domain.length < 2) {
    return {
      color: { value: PALETTE[0] },
      strokeDash: { value: DASHES[0] },
      shape: { value: MARKERS[0] },
    };
  }
  const on = (range: unknown[], legend: unknown = null) => ({
    field: key.field,
    type: 'nominal',
    title: key.title,
    scale: { domain: key.domain, range },
    legend,
  });
  return {
    color: on(PALETTE),
    strokeDash: on(DASHES),
    shape: on(MARKERS),
    legend: on(MARKERS.map(legendSymbol), { title: key.title }),
  };
}

/**
 * An invisible layer that only carries the legend: Vega-Lite draws one symbol per
 * entry, so the legend's symbols are line + marker paths on their own shape scale,
 * coloured and dashed by `lineLegends` after compilation.
 */
function legendLayer(key: StyleKey | undefined, y: Channel): Channel[] {
  const s = styles(key);
  return s.legend
    ? [{ mark: { type: 'point', opacity: 0 }, encoding: { y, shape: s.legend } }]
    : [];
}

/** A compiled Vega spec and its nested group marks, each with its scales and legends. */
type VegaGroup = {
  scales?: { name: string }[];
  legends?: Record<string, unknown>[];
  marks?: unknown[];
};

/** The spec and every group mark nested in it. */
function vegaGroups(spec: VegaGroup): VegaGroup[] {
  return [spec, ...(spec.marks ?? []).flatMap((m) => vegaGroups(m as VegaGroup))];
}

/**
 * Vega-Lite patch: legends of the legend layer take their stroke and fill from the
 * colour scale and their dash from the dash scale, so each entry shows the
 * series' line, dash and marker. (All colour scales of a figure map the same
 * domain to the same range, so any one serves.)
 */
export function lineLegends(compiled: vega.Spec): void {
  const groups = vegaGroups(compiled as VegaGroup);
  const names = groups.flatMap((g) => (g.scales ?? []).map((s) => s.name));
  const color = names.find((n) => /(^|_)color$/.test(n));
  const dash = names.find((n) => /(^|_)strokeDash$/.test(n));
  if (!color) return;
  for (const legend of groups.flatMap((g) => g.legends ?? [])) {
    if (!legend.shape) continue;
    legend.stroke = color;
    if (dash) legend.strokeDash = dash;
    legend.encode = {
      symbols: {
        update: { fill: { scale: color, field: 'value' }, opacity: { value: 1 } },
      },
    };
  }
}

/** The tested x values and how the figure places them. */
export interface XAxis {
  title: string;
  ks: number[];
  label: (k: number) => string;
  numeric: boolean;
  scale: 'log' | 'linear' | 'point';
}

/**
 * x encoding with ticks at exactly the tested values, labelled as written (a label
 * that would overlap its neighbour's is left out, its tick kept). Values
 * that are not numbers, a single value, or a log scale over values <= 0 are placed
 * as evenly spaced points.
 */
function xEncoding(x: XAxis): Channel {
  const lo = Math.min(...x.ks);
  const hi = Math.max(...x.ks);
  const point = x.scale === 'point' || !x.numeric || lo === hi || (x.scale === 'log' && lo <= 0);
  if (point) {
    return {
      field: 'xText',
      type: 'ordinal',
      title: x.title,
      sort: x.ks.map(x.label),
      scale: { type: 'point', padding: 0.4 },
      axis: { labelAngle: 0, labelOverlap: false, grid: true },
    };
  }
  const labels = Object.fromEntries(x.ks.map((k) => [String(k), x.label(k)]));
  const label = `(${JSON.stringify(labels)}[toString(datum.value)] || datum.label)`;
  const lowered = loweredLabels(x, lo, hi);
  return {
    field: 'k',
    type: 'quantitative',
    title: x.title,
    scale: {
      type: x.scale,
      domain: [lo, hi],
      nice: false,
      padding: X_PADDING,
      ...(x.scale === 'linear' ? { zero: false } : {}),
    },
    axis: {
      values: x.ks,
      // every tested value is labelled: a label that would print over its neighbour's
      // (K = 254 beside 256 on a log axis) goes one row lower (a two-line label, the first empty)
      labelExpr: lowered.length
        ? `indexof(${JSON.stringify(lowered)}, datum.value) >= 0 ? ['', ${label}] : ${label}`
        : label,
      labelOverlap: false,
      labelFlush: false,
      grid: true,
    },
  };
}

/** Plot width of the study figure and the x scale's padding, in px. */
const PLOT_WIDTH = 460;
const X_PADDING = 16;

/**
 * The tested x values whose labels go one row lower: walking left to right, a label
 * that would come within 6 px of the previous one on the first row. Label widths
 * are estimated at 6.5 px per character (11 px sans-serif digits are ~6.1 px).
 */
export function loweredLabels(x: XAxis, lo: number, hi: number): number[] {
  const f = x.scale === 'log' ? Math.log : (v: number) => v;
  const span = PLOT_WIDTH - 2 * X_PADDING;
  const at = (k: number) => X_PADDING + ((f(k) - f(lo)) / (f(hi) - f(lo))) * span;
  const half = (k: number) => (x.label(k).length * 6.5) / 2;
  const lowered: number[] = [];
  let previous: number | undefined; // the last label on the first row
  for (const k of [...x.ks].sort((a, b) => a - b)) {
    if (previous !== undefined && at(k) - half(k) < at(previous) + half(previous) + 6) {
      lowered.push(k);
    } else {
      previous = k;
    }
  }
  return lowered;
}

/** Shared look: the figure font, whole legend labels and titles, line + marker legend symbols. */
const CONFIG = {
  font: FIGURE_FONT,
  axis: {
    labelFontSize: 11,
    titleFontSize: 12,
    titleFontWeight: 'normal',
    labelLimit: 0,
    labelSeparation: 6, // labels that would come closer are thinned out (not tested values)
  },
  legend: {
    labelFontSize: 11,
    titleFontSize: 12,
    titleFontWeight: 'normal',
    labelLimit: 0,
    titleLimit: 0,
    symbolSize: MARKER_SIZE,
    symbolStrokeWidth: 2,
    symbolOpacity: 1,
    labelOffset: 16,
    rowPadding: 6,
  },
  title: { fontSize: 14, subtitleFontSize: 11, subtitleColor: '#333', anchor: 'start' },
} as const;

/** One point of the study figure: a series at an x value, over its seeds. */
export interface StudyPoint {
  series: string;
  k: number;
  xText: string;
  /** kNN top-1 in %. */
  mean: number;
  lo: number;
  hi: number;
  /** Seeds at this point; error bars are drawn where n > 1. */
  n: number;
}

/** A horizontal reference line of the study figure (e.g. a random-init encoder's kNN), in %. */
export interface Reference {
  value: number;
  /** Its label, drawn above the line at the left: e.g. 'random-init encoder 65.20%'. */
  text: string;
}

/**
 * The reference lines of a figure (e.g. the random-init encoder's kNN) on the
 * accuracy axis: a dashed rule at each value and its label beside the rule's
 * start (along a horizontal rule; turned along a vertical one).
 */
function referenceLayers(
  references: readonly Reference[],
  axis: 'x' | 'y',
  scale: Record<string, unknown>,
): Record<string, unknown>[] {
  if (!references.length) return [];
  const data = { values: references as unknown as Record<string, unknown>[] };
  const at = { [axis]: { ...scale, field: 'value' } };
  const label =
    axis === 'y'
      ? { mark: { align: 'left', dx: 3 }, start: { x: { value: 0 } } }
      : { mark: { angle: 270, align: 'right', dx: -3 }, start: { y: { value: 0 } } };
  return [
    {
      data,
      mark: { type: 'rule', strokeDash: [2, 3], strokeWidth: 1.5, color: '#555' },
      encoding: at,
    },
    {
      data,
      mark: { type: 'text', ...label.mark, baseline: 'bottom', dy: -2, fontSize: 10 },
      encoding: { ...at, ...label.start, text: { field: 'text' }, color: { value: '#333' } },
    },
  ];
}

/**
 * kNN accuracy against the swept value, one line per series: markers and dashes
 * per series, error bars (mean ± std) where a point has several seeds, ticks at
 * the tested values (labels that would collide drop a row), the protocol as
 * subtitle, and labelled dashed lines at the `references` (same protocol).
 */
export function studyPlotSpec(
  points: readonly StudyPoint[],
  x: XAxis,
  key: StyleKey | undefined,
  title: { text: string; subtitle: string[] },
  references: readonly Reference[] = [],
): TopLevelSpec {
  const s = styles(key);
  const y = { type: 'quantitative', title: 'kNN top-1 accuracy (%)' };
  const xe = xEncoding(x);
  const data = { values: points as unknown as Record<string, unknown>[] };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { ...title, frame: 'group' },
    width: PLOT_WIDTH,
    height: 300,
    background: 'white',
    layer: [
      ...referenceLayers(references, 'y', y),
      {
        data,
        mark: { type: 'line', strokeWidth: 2 },
        encoding: {
          x: xe,
          y: { ...y, field: 'mean', scale: { zero: false, nice: false, padding: 8 } },
          color: s.color,
          strokeDash: s.strokeDash,
        },
      },
      {
        data,
        transform: [{ filter: 'datum.n > 1' }],
        mark: { type: 'errorbar', ticks: true, thickness: 1.5 },
        encoding: { x: xe, y: { ...y, field: 'lo' }, y2: { field: 'hi' }, color: s.color },
      },
      {
        data,
        mark: { type: 'point', filled: true, size: MARKER_SIZE, opacity: 1 },
        encoding: { x: xe, y: { ...y, field: 'mean' }, color: s.color, shape: s.shape },
      },
      ...legendLayer(key, { ...y, field: 'mean' }).map((l) => ({
        ...l,
        data,
        encoding: { ...(l.encoding as Channel), x: xe },
      })),
    ],
    resolve: { scale: { shape: 'independent' } },
    config: CONFIG,
  } as unknown as TopLevelSpec;
}

/** A curve value at one step or epoch of one line (configuration), over its seeds. */
export interface CurvePoint {
  line: string;
  at: number;
  mean: number;
  lo: number;
  hi: number;
  n: number;
  /** Loss panel: a marker is drawn at this step (a few per line, staggered). */
  marker?: boolean;
}

/** One panel of the curves figure: mean line, seed spread (band or error bars), markers. */
function curvePanel(
  values: readonly CurvePoint[],
  axes: { x: string; y: string; xValues?: number[] },
  key: StyleKey | undefined,
  spread: 'band' | 'errorbar',
  withLegend: boolean,
): Channel {
  const s = styles(key);
  const xs = values.map((p) => p.at);
  const [lo, hi] = [Math.min(...xs), Math.max(...xs)];
  const x = {
    field: 'at',
    type: 'quantitative',
    title: axes.x,
    ...(axes.xValues
      ? {
          scale: { domain: lo === hi ? [lo - 1, hi + 1] : [lo, hi], nice: false, padding: 16 },
          axis: { values: axes.xValues, format: 'd', grid: true },
        }
      : { axis: { tickMinStep: 1, format: 'd' } }), // steps are whole numbers
  };
  const y = {
    type: 'quantitative',
    title: axes.y,
    scale: { zero: false, nice: false, padding: 8 },
  };
  return {
    width: 380,
    height: 260,
    data: { values },
    encoding: { x },
    layer: [
      spread === 'band'
        ? {
            transform: [{ filter: 'datum.n > 1' }],
            mark: { type: 'area', opacity: 0.2 },
            encoding: { y: { ...y, field: 'lo' }, y2: { field: 'hi' }, color: s.color },
          }
        : {
            transform: [{ filter: 'datum.n > 1' }],
            mark: { type: 'errorbar', ticks: true, thickness: 1.5 },
            encoding: { y: { ...y, field: 'lo' }, y2: { field: 'hi' }, color: s.color },
          },
      {
        mark: { type: 'line', strokeWidth: 1.5 },
        encoding: { y: { ...y, field: 'mean' }, color: s.color, strokeDash: s.strokeDash },
      },
      {
        transform: spread === 'band' ? [{ filter: 'datum.marker' }] : [],
        mark: { type: 'point', filled: true, size: MARKER_SIZE, opacity: 1 },
        encoding: { y: { ...y, field: 'mean' }, color: s.color, shape: s.shape },
      },
      ...(withLegend ? legendLayer(key, { ...y, field: 'mean' }) : []),
    ],
    resolve: { scale: { shape: 'independent' } },
  };
}

/** One training-loss panel of the curves figure: the runs of one objective. */
export interface LossPanel {
  /** Panel title and subtitle (what the loss is, what x is). */
  title: { text: string; subtitle: string[] };
  /** x axis title: 'step', or the share of each run's steps. */
  x: string;
  points: readonly CurvePoint[];
}

/**
 * Training loss and kNN per epoch, one line per configuration; seeds as a band
 * (loss) and error bars (kNN), mean ± std. One loss panel per objective (losses
 * of different objectives share no axis), each with its own title; the kNN panel
 * carries the kNN protocol as its subtitle. The kNN panel is left out when the
 * runs evaluated kNN at one epoch only (`eval.knn.every: 0`).
 */
export function curvesSpec(
  loss: readonly LossPanel[],
  knn: { points: readonly CurvePoint[]; subtitle: string[] },
  key: StyleKey | undefined,
  title: { text: string; subtitle: string[] },
): TopLevelSpec {
  const epochs = [...new Set(knn.points.map((p) => p.at))].sort((a, b) => a - b);
  const perEpoch = epochs.length > 1; // one evaluation (at the end) is the study figure's point
  const titled = (panel: Channel, t: { text: string; subtitle: string[] }) => ({
    ...panel,
    title: { ...t, anchor: 'start', frame: 'group' },
  });
  const panels = [
    ...loss.map((p, i) =>
      titled(
        curvePanel(p.points, { x: p.x, y: 'training loss' }, key, 'band', !perEpoch && i === 0),
        p.title,
      ),
    ),
    ...(perEpoch
      ? [
          titled(
            curvePanel(
              knn.points,
              { x: 'epoch', y: 'kNN top-1 accuracy (%)', xValues: epochs },
              key,
              'errorbar',
              true,
            ),
            { text: 'kNN top-1 accuracy per epoch', subtitle: knn.subtitle },
          ),
        ]
      : []),
  ];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { ...title, frame: 'bounds' },
    background: 'white',
    hconcat: panels,
    config: CONFIG,
  } as unknown as TopLevelSpec;
}

/** One dot of the categorical figure: a series' (e.g. a method's) accuracy by one protocol, over seeds. */
export interface CategoryPoint {
  series: string;
  /** The evaluation, e.g. 'kNN' or 'linear probe'. */
  metric: string;
  /** Top-1 in %. */
  mean: number;
  lo: number;
  hi: number;
  /** Seeds; error bars are drawn where n > 1. */
  n: number;
}

/**
 * The categorical study's figure: one row per series (method), a dot per
 * evaluation (kNN, linear probe) at its mean top-1 with a mean ± std error bar
 * over seeds, the evaluations told apart by colour and marker (and offset
 * within the row), and labelled dashed vertical lines at the `references`.
 */
export function categorySpec(
  points: readonly CategoryPoint[],
  rows: { title: string; order: string[] },
  metrics: string[],
  title: { text: string; subtitle: string[] },
  references: readonly Reference[] = [],
): TopLevelSpec {
  const key: StyleKey = { field: 'metric', title: 'evaluation', domain: metrics };
  const s = styles(key);
  const x = { type: 'quantitative', title: 'top-1 accuracy (%)' };
  const y = { field: 'series', type: 'nominal', title: rows.title, sort: rows.order };
  const yOffset = { field: 'metric', type: 'nominal', sort: metrics, scale: { padding: 0.4 } };
  const data = { values: points as unknown as Record<string, unknown>[] };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { ...title, frame: 'group' },
    width: PLOT_WIDTH,
    height: { step: 14 * Math.max(2, metrics.length) },
    background: 'white',
    layer: [
      ...referenceLayers(references, 'x', x),
      {
        data,
        transform: [{ filter: 'datum.n > 1' }],
        mark: { type: 'errorbar', ticks: true, thickness: 1.5 },
        encoding: { y, yOffset, x: { ...x, field: 'lo' }, x2: { field: 'hi' }, color: s.color },
      },
      {
        data,
        mark: { type: 'point', filled: true, size: MARKER_SIZE, opacity: 1 },
        encoding: {
          y,
          yOffset,
          x: { ...x, field: 'mean', scale: { zero: false, nice: false, padding: 12 } },
          color: s.color,
          shape: s.shape,
        },
      },
      ...(s.legend
        ? [
            {
              data,
              mark: { type: 'point', opacity: 0 },
              encoding: { y, yOffset, x: { ...x, field: 'mean' }, shape: s.legend },
            },
          ]
        : []),
    ],
    resolve: { scale: { shape: 'independent' } },
    config: CONFIG,
  } as unknown as TopLevelSpec;
}
