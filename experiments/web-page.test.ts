import { createReadStream, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinPlugins } from '@contrast/cli';
import { nativeImageDecoder, nativeImageEncoders } from '@contrast/backend';
import { readImageFiles } from '@contrast/data';
import {
  backboneEncoder,
  buildGallery,
  l2NormalizeRows,
  nearest,
  toModelInput,
  type Neighbour,
} from '@contrast/export';
import { createCatalog, openRun } from '@contrast/trainer';
import { cli } from './cli.js';
import { trainTinyRun } from './tiny-run.js';

/** Debian's chromium (set-up installs it), driven by playwright-core; it cannot download browsers here. */
const CHROMIUM = process.env.CONTRAST_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const QUERIES = [1000, 1001, 1002, 1003, 1004]; // test images outside the 1,000-image gallery
const K = 5;

/** A tiny static file server on a free loopback port. */
function serve(dir: string): Promise<Server> {
  const types: Record<string, string> = {
    '.html': 'text/html',
    '.js': 'text/javascript',
    '.json': 'application/json',
  };
  const server = createServer((req, res) => {
    const path = join(dir, normalize(decodeURIComponent(new URL(req.url!, 'http://x').pathname)));
    if (!path.startsWith(dir) || !existsSync(path)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' });
    createReadStream(path).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('the nearest-neighbour page in headless Chromium', () => {
  let root: string;
  let page: string;
  let queries: string[];
  let expected: Neighbour[][];
  let browser: BrowserContext;
  let server: Server;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-page-'));
    const catalog = createCatalog(builtinPlugins());
    const { runPath } = await trainTinyRun(root, 'page-tiny');
    const out = join(root, 'page');
    const r = await cli(['export', runPath, '--format', 'web', '--out', out, '--gallery', '1000']);
    expect(r.code, r.stderr).toBe(0);
    page = join(out, 'index.html');

    // the 5 queries as PNG files, and their neighbours computed in Node: files decoded as training
    // decodes image folders, features of the run's encoder, the same gallery the page holds
    const o = await openRun(runPath, catalog);
    try {
      const { dataset, encoder } = o.session;
      mkdirSync(join(root, 'queries'));
      queries = [];
      for (const i of QUERIES) {
        const img = tf.tensor3d(
          dataset.test.images.subarray(i * 784, (i + 1) * 784),
          [28, 28, 1],
          'int32',
        );
        queries.push(join(root, 'queries', `test-${i}.png`));
        writeFileSync(queries.at(-1)!, await nativeImageEncoders().png(img));
        img.dispose();
      }
      const gallery = await buildGallery(dataset, backboneEncoder(encoder), 1000);
      const files = readImageFiles(queries, { decode: nativeImageDecoder(), size: 28 });
      const q = tf.tidy(() => {
        const rgb = tf.tensor4d(files.images, [files.n, 28, 28, 3], 'int32');
        return encoder
          .features(toModelInput(rgb, { ...dataset, channels: 1 }), false)
          .dataSync() as Float32Array;
      });
      const dim = encoder.featureDim;
      l2NormalizeRows(q, dim);
      expected = QUERIES.map((_, i) =>
        nearest(q.subarray(i * dim, (i + 1) * dim), gallery.embeddings, dim, K),
      );
    } finally {
      o.session.dispose();
    }
    browser = await chromium.launchPersistentContext(
      mkdtempSync(join(tmpdir(), 'contrast-chromium-')),
      {
        executablePath: CHROMIUM,
        headless: true,
        args: FLAGS,
        viewport: { width: 900, height: 760 },
      },
    );
    server = await serve(out);
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
  });

  /** Opens the page, embeds the 5 queries through its file input, returns what it shows. */
  async function neighboursShown(url: string, screenshot?: string) {
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on('pageerror', (e) => errors.push(e.message));
    await tab.goto(url);
    await tab.waitForSelector('#status[data-state=ready]', { timeout: 120_000 });
    await tab.setInputFiles('#file', queries);
    await tab.waitForSelector('#status[data-state=done]', { timeout: 120_000 });
    const shown = await tab.$$eval('.query', (rows) =>
      rows.map((row) => ({
        file: row.getAttribute('data-file') ?? undefined,
        neighbours: [...row.querySelectorAll('.neighbour')].map((n) => ({
          index: Number(n.getAttribute('data-index')),
          similarity: Number(n.getAttribute('data-similarity')),
        })),
      })),
    );
    const about = await tab.textContent('#about');
    if (screenshot) await tab.screenshot({ path: screenshot, fullPage: true });
    await tab.close();
    expect(errors).toEqual([]);
    return { shown, about };
  }

  function expectSameNeighbours(shown: { file?: string; neighbours: Neighbour[] }[]) {
    expect(shown.map((s) => s.file)).toEqual(QUERIES.map((i) => `test-${i}.png`));
    shown.forEach((s, q) => {
      expect(s.neighbours.map((n) => n.index)).toEqual(expected[q]!.map((n) => n.index));
      s.neighbours.forEach((n, j) =>
        expect(Math.abs(n.similarity - expected[q]![j]!.similarity)).toBeLessThan(1e-4),
      );
    });
  }

  it('opened from disk (file://, the inlined model): the top-5 of 5 query images equal those computed in Node', async () => {
    const shot = join(root, 'page.png');
    const { shown, about } = await neighboursShown(pathToFileURL(page).href, shot);
    console.log(`page: ${about}\nscreenshot: ${shot}`);
    expect(about).toContain('model.js (inlined)');
    expectSameNeighbours(shown);
  });

  it('served over http (tf.loadLayersModel on tfjs/model.json): the same neighbours', async () => {
    const { port } = server.address() as AddressInfo;
    const { shown, about } = await neighboursShown(`http://127.0.0.1:${port}/index.html`);
    expect(about).toContain('tfjs/model.json');
    expectSameNeighbours(shown);
  });
});
