import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

/**
 * A deterministic test picture [size, size, 3] uint8 RGB for image `i`: a
 * colour gradient and a bright rectangle whose place follows `i` and whose
 * colours follow `hue` (default: from `i`); smooth, so it compresses like a
 * photo, not like noise.
 */
export function syntheticImage(i: number, size: number, hue = (i * 37) % 256): Uint8Array {
  const px = new Uint8Array(size * size * 3);
  const box = {
    top: (i * 7) % (size >> 1),
    left: (i * 13) % (size >> 1),
    side: (size >> 2) + (i % (size >> 2)),
  };
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const o = (y * size + x) * 3;
      const inBox =
        y >= box.top && y < box.top + box.side && x >= box.left && x < box.left + box.side;
      px[o] = inBox ? 255 - hue : (hue + x * 2) & 255;
      px[o + 1] = inBox ? 240 : (y * 3 + (i % 97)) & 255;
      px[o + 2] = inBox ? hue : ((x + y) * 2) & 255;
    }
  }
  return px;
}

/** Encodes raw RGB pixels [size, size, 3] as a JPEG (quality 90) or PNG file's bytes. */
export async function encodeImage(
  pixels: Uint8Array,
  size: number,
  format: 'jpeg' | 'png',
): Promise<Buffer> {
  const img = sharp(pixels, { raw: { width: size, height: size, channels: 3 } });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 90 }).toBuffer();
}

export interface SyntheticFolderOptions {
  /** Images to write. */
  count: number;
  /** Side of the square pictures. */
  size: number;
  format?: 'jpeg' | 'png';
  /** Class sub-folders (`class-00`...; image i in class i % classes); 0 = none. */
  classes?: number;
  /** Without classes: at most this many files a sub-folder (`00000/`...; 0 = all in `dir`). */
  perFolder?: number;
  /** Distinct pictures, cycled (encoding once each makes large folders quick to write). */
  distinct?: number;
}

/**
 * Writes a folder of generated pictures (for tests and the data benchmark):
 * image i is `<class-NN or 00000>/img-0000000i.<jpg|png>`. Returns the relative paths in index order.
 */
export async function writeSyntheticFolder(
  dir: string,
  options: SyntheticFolderOptions,
): Promise<string[]> {
  const { count, size, classes = 0, perFolder = 0 } = options;
  const format = options.format ?? 'jpeg';
  const ext = format === 'png' ? 'png' : 'jpg';
  const distinct = Math.min(count, options.distinct ?? count);
  const cache = new Map<number, Buffer>();
  // with classes, a class has its own colours (so labels can be learnt), else colours follow the picture
  const hueOf = (k: number) =>
    classes > 0 ? Math.floor(((k % classes) * 256) / classes) : (k * 37) % 256;
  const bytesOf = async (i: number) => {
    const k = i % distinct;
    let b = cache.get(k);
    if (!b) {
      b = await encodeImage(syntheticImage(k, size, hueOf(k)), size, format);
      if (distinct < count) cache.set(k, b);
    }
    return b;
  };
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const folder =
      classes > 0
        ? `class-${String(i % classes).padStart(2, '0')}`
        : perFolder > 0
          ? String(Math.floor(i / perFolder)).padStart(5, '0')
          : '';
    const rel = `${folder ? `${folder}/` : ''}img-${String(i).padStart(8, '0')}.${ext}`;
    if (folder) mkdirSync(join(dir, folder), { recursive: true });
    else mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, rel), await bytesOf(i));
    paths.push(rel);
  }
  return paths.sort();
}
