import { createHash } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { StateError } from './errors.js';

/**
 * A tensor bundle on disk: magic, a JSON header (names, shapes, dtypes, offsets,
 * sha256 of the payload), then the raw little-endian payload. Checked on read,
 * so a truncated or corrupt file is refused rather than half-loaded.
 */
const MAGIC = Buffer.from('CTRSTB01');

interface Entry {
  name: string;
  dtype: 'float32' | 'int32';
  shape: number[];
  offset: number;
  bytes: number;
}

/** Writes `data` to `path` atomically: temp file in the same folder, fsync, rename. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  const fd = openSync(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Serialises named tensors (reads them to host: call outside the hot loop). */
export function encodeBundle(
  tensors: Record<string, tf.Tensor>,
  values: Record<string, unknown> = {},
): Buffer {
  const entries: Entry[] = [];
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') {
      throw new StateError(`tensor '${name}' has dtype ${t.dtype}; bundles hold float32 and int32`);
    }
    const data = t.dataSync() as Float32Array | Int32Array;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    entries.push({ name, dtype: t.dtype, shape: [...t.shape], offset, bytes: bytes.length });
    chunks.push(bytes);
    offset += bytes.length;
  }
  const payload = Buffer.concat(chunks);
  const header = Buffer.from(
    JSON.stringify({ entries, values, sha256: createHash('sha256').update(payload).digest('hex') }),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([MAGIC, len, header, payload]);
}

export interface DecodedBundle {
  tensors: Record<string, tf.Tensor>;
  values: Record<string, unknown>;
}

/** Parses and verifies a bundle; the caller owns (and disposes) the returned tensors. */
export function decodeBundle(buf: Buffer, file = '<buffer>'): DecodedBundle {
  const bad = (why: string) =>
    new StateError(`${file}: ${why}`, {
      hint: 'the file is corrupt or truncated; use another copy',
    });
  if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC))
    throw bad('not a tensor bundle (bad magic)');
  const hlen = buf.readUInt32LE(8);
  if (12 + hlen > buf.length) throw bad('header runs past the end of the file');
  let header: { entries: Entry[]; values: Record<string, unknown>; sha256: string };
  try {
    header = JSON.parse(buf.subarray(12, 12 + hlen).toString('utf8'));
  } catch (e) {
    throw bad(`unreadable header (${(e as Error).message})`);
  }
  const payload = buf.subarray(12 + hlen);
  const expected = header.entries.reduce((s, e) => s + e.bytes, 0);
  if (payload.length !== expected)
    throw bad(`payload is ${payload.length} bytes, header says ${expected}`);
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256)
    throw bad('checksum mismatch');
  const tensors: Record<string, tf.Tensor> = {};
  for (const e of header.entries) {
    const slice = payload.subarray(e.offset, e.offset + e.bytes);
    const copy = new ArrayBuffer(e.bytes);
    new Uint8Array(copy).set(slice);
    const data = e.dtype === 'float32' ? new Float32Array(copy) : new Int32Array(copy);
    tensors[e.name] = tf.tensor(data, e.shape, e.dtype);
  }
  return { tensors, values: header.values };
}

export function readBundle(path: string): DecodedBundle {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new StateError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  return decodeBundle(buf, path);
}
