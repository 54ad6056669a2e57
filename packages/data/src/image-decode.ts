import sharp from 'sharp';
import { DatasetError, type ImageSplit } from '@contrast/core';

let configured = false;

/**
 * libvips as a streaming decoder: no operation cache (it would keep recent
 * images and grow with the folder) and one libvips thread per image (images
 * are decoded many at a time on libuv's thread pool, so per-image threads
 * would only oversubscribe the cores the training step uses).
 */
function configure(): void {
  if (configured) return;
  sharp.cache(false);
  sharp.concurrency(1);
  configured = true;
}

/** Formats that can carry an alpha channel (JPEG cannot). */
const MAY_HAVE_ALPHA = /\.(png|webp|gif|tiff?|avif)$/i;

/**
 * Decodes an image file (JPEG, PNG, WebP, GIF's first frame, TIFF, AVIF) to
 * uint8 RGB pixels [size, size, 3], row-major HWC: EXIF orientation applied,
 * alpha dropped before resizing (PIL's `convert('RGB')`, as torchvision's
 * ImageFolder loads images: libvips would otherwise resize premultiplied
 * pixels), grey and CMYK converted to sRGB, 16-bit reduced to 8, and the image
 * stretched to a size x size square (libvips' shrink-on-load for JPEG, then a
 * Lanczos-3 reduce). Runs on libuv's thread pool, off the main thread.
 * Rejects when the file is missing, truncated or not an image.
 */
export async function decodeImage(file: string, size: number): Promise<Uint8Array> {
  configure();
  let image = sharp(file).rotate();
  if (MAY_HAVE_ALPHA.test(file) && (await image.metadata()).hasAlpha) {
    const rgb = await image
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = rgb.info;
    image = sharp(rgb.data, { raw: { width, height, channels } });
  }
  const { data, info } = await image
    .resize(size, size, { fit: 'fill' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== size * size * 3) {
    throw new Error(
      `decoded to ${info.width}x${info.height}x${info.channels}, not ${size}x${size}x3`,
    );
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

/** The first line of an error's message (libvips' messages run over several lines). */
export const firstLine = (e: unknown) => String((e as Error).message ?? e).split('\n')[0]!;

/**
 * Decodes files into an in-memory split (evaluation images), a few at a time
 * on the thread pool. Unreadable files are skipped and returned in `skipped`,
 * or refused when strict.
 * @throws DatasetError naming the first unreadable file when strict.
 */
export async function decodeSplit(
  files: readonly string[],
  labels: Uint8Array,
  size: number,
  strict: boolean,
): Promise<{ split: ImageSplit; skipped: string[] }> {
  const per = size * size * 3;
  const images = new Uint8Array(files.length * per);
  const ok = new Uint8Array(files.length);
  const skipped: string[] = [];
  const chunk = 64;
  for (let s = 0; s < files.length; s += chunk) {
    const part = files.slice(s, s + chunk);
    const results = await Promise.allSettled(part.map((f) => decodeImage(f, size)));
    results.forEach((r, k) => {
      if (r.status === 'fulfilled') {
        images.set(r.value, (s + k) * per);
        ok[s + k] = 1;
      } else if (strict) throw unreadable(part[k]!, r.reason);
      else skipped.push(part[k]!);
    });
  }
  const kept = new Uint8Array(files.length);
  let n = 0;
  for (let i = 0; i < files.length; i++) {
    if (!ok[i]) continue;
    if (n !== i) images.copyWithin(n * per, i * per, (i + 1) * per); // close the gaps of skipped files
    kept[n++] = labels[i]!;
  }
  return {
    split: { images: images.subarray(0, n * per), labels: kept.subarray(0, n), n },
    skipped,
  };
}

/**
 * The error for an unreadable image (data.strict, or no readable image left);
 * `lenient` says how the user skips unreadable files instead.
 */
export function unreadable(
  file: string,
  cause: unknown,
  lenient = 'set data.strict: false',
): DatasetError {
  return new DatasetError(file, `unreadable image (${firstLine(cause)})`, {
    hint: `remove or replace the file, or ${lenient} to skip unreadable files`,
    cause,
  });
}
