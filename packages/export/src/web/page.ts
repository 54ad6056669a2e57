import * as tf from '@tensorflow/tfjs';
import {
  l2NormalizeRows,
  nearest,
  resizeAsTraining,
  toModelInput,
  type InputSpec,
} from '../pixels.js';

/**
 * The nearest-neighbour page: embeds a chosen or dropped image in the browser
 * with the exported tfjs model and shows its k nearest gallery images. The
 * model comes from `tfjs/model.json` over http(s), or from `model.js` (the same
 * model inlined) when the page is opened from disk, where fetch cannot read files.
 */

interface Gallery {
  encoder: {
    input: InputSpec;
    architecture: Record<string, unknown>;
    training?: { name: string; dataset: { name: string } };
    results: Record<string, { value: number }>;
  };
  ids: string[];
  labels: (string | number)[];
  thumbs: string[];
  dim: number;
  /** base64 of float32 [n, dim], rows L2-normalised. */
  embeddings: string;
}

interface InlineModel {
  modelTopology: object;
  weightSpecs: tf.io.WeightsManifestEntry[];
  /** base64 of the weights. */
  weightData: string;
}

declare global {
  interface Window {
    CONTRAST_GALLERY?: Gallery;
    CONTRAST_MODEL?: InlineModel;
  }
}

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;

function fromBase64(b64: string): ArrayBuffer {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

function setStatus(text: string, state: string): void {
  const el = $('#status');
  el.textContent = text;
  el.dataset.state = state;
}

async function loadModel(): Promise<{ model: tf.LayersModel; source: string }> {
  const inline = window.CONTRAST_MODEL;
  if (location.protocol !== 'file:' || !inline) {
    return { model: await tf.loadLayersModel('tfjs/model.json'), source: 'tfjs/model.json' };
  }
  const handler = tf.io.fromMemory({
    modelTopology: inline.modelTopology,
    weightSpecs: inline.weightSpecs,
    weightData: fromBase64(inline.weightData),
  });
  return { model: await tf.loadLayersModel(handler), source: 'model.js (inlined)' };
}

/** The L2-normalised features of one image element. */
function embedImage(model: tf.LayersModel, img: HTMLImageElement, input: InputSpec): Float32Array {
  const x = tf.tidy(() => {
    const rgb = resizeAsTraining(tf.browser.fromPixels(img, 3), input.height, input.width);
    return toModelInput(tf.expandDims(rgb, 0) as tf.Tensor4D, input);
  });
  const out = model.predict(x);
  const features = Array.isArray(out) ? out[0]! : out;
  const data = features.dataSync() as Float32Array;
  tf.dispose([x, out]);
  return l2NormalizeRows(Float32Array.from(data), data.length);
}

function loadImage(file: Blob): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('not an image the browser can decode'));
    img.src = URL.createObjectURL(file);
  });
}

function neighbourFigure(g: Gallery, index: number, similarity: number): HTMLElement {
  const fig = document.createElement('figure');
  fig.className = 'neighbour';
  fig.dataset.index = String(index);
  fig.dataset.similarity = String(similarity);
  fig.innerHTML = `<img alt=""><figcaption></figcaption>`;
  fig.querySelector('img')!.src = g.thumbs[index]!;
  fig.querySelector('figcaption')!.textContent = `${g.labels[index]} · ${similarity.toFixed(3)}`;
  fig.title = g.ids[index]!;
  return fig;
}

async function showQueries(
  files: File[],
  model: tf.LayersModel,
  g: Gallery,
  gallery: Float32Array,
) {
  const k = Math.max(1, Number(($('#k') as HTMLInputElement).value) || 5);
  const list = $('#results');
  list.replaceChildren();
  setStatus(`embedding ${files.length} image(s)...`, 'busy');
  for (const file of files) {
    const row = document.createElement('section');
    row.className = 'query';
    row.dataset.file = file.name;
    const img = await loadImage(file);
    const head = document.createElement('figure');
    head.className = 'query-image';
    head.append(img);
    const cap = document.createElement('figcaption');
    cap.textContent = file.name;
    head.append(cap);
    row.append(head);
    const t0 = performance.now();
    const q = embedImage(model, img, g.encoder.input);
    for (const nb of nearest(q, gallery, g.dim, k)) {
      row.append(neighbourFigure(g, nb.index, nb.similarity));
    }
    row.dataset.ms = (performance.now() - t0).toFixed(0);
    list.append(row);
  }
  setStatus(`${files.length} image(s) embedded; ${k} nearest of ${g.ids.length} each`, 'done');
}

async function main(): Promise<void> {
  const g = window.CONTRAST_GALLERY;
  if (!g) throw new Error('gallery.js did not load');
  const params = new URLSearchParams(location.search);
  if (params.get('backend')) await tf.setBackend(params.get('backend')!);
  await tf.ready();
  const { model, source } = await loadModel();
  const gallery = new Float32Array(fromBase64(g.embeddings));
  const e = g.encoder;
  const knn = e.results.knn_top1
    ? `, kNN top-1 ${(100 * e.results.knn_top1.value).toFixed(2)}%`
    : '';
  $('#about').textContent =
    `${String(e.architecture.encoder)} trained on ${e.training?.dataset.name} (${e.training?.name}${knn}); ` +
    `${g.ids.length} gallery images; model from ${source}; tfjs backend ${tf.getBackend()}`;
  const run = (files: File[]) =>
    showQueries(files, model, g, gallery).catch((err: Error) => setStatus(err.message, 'error'));
  const picker = $('#file') as HTMLInputElement;
  picker.addEventListener('change', () => run([...(picker.files ?? [])]));
  const drop = $('#drop');
  drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    void run([...(ev.dataTransfer?.files ?? [])]);
  });
  setStatus('ready: choose or drop images', 'ready');
}

main().catch((err: Error) => setStatus(`failed: ${err.message}`, 'error'));
