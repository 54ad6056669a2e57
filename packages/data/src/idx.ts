import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { DatasetError } from '@contrast/core';

/**
 * IDX files (the MNIST format): magic 0x0000 | type | ndims, big-endian dims,
 * then the payload. Gzipped files are recognised by their own magic.
 */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const UBYTE = 0x08;

export function parseIdx(buf: Uint8Array, file: string): IdxArray {
  let bytes = buf;
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DatasetError(
        file,
        `gzip stream is corrupt or truncated (${(e as Error).message})`,
        {
          hint: 'download the file again (or reinstall dataset-fashion-mnist)',
          cause: e,
        },
      );
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DatasetError(file, 'bad IDX magic: not an IDX file', {
      hint: 'point data.root at the official IDX files',
    });
  }
  if (bytes[2] !== UBYTE) {
    throw new DatasetError(
      file,
      `IDX element type 0x${bytes[2]!.toString(16)} is not unsigned byte (0x08)`,
    );
  }
  const ndims = bytes[3]!;
  if (ndims < 1 || bytes.length < 4 + 4 * ndims) {
    throw new DatasetError(
      file,
      `IDX header declares ${ndims} dimensions but the file is too short`,
      {
        hint: 'the file is truncated; download it again',
      },
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const payload = bytes.length - 4 - 4 * ndims;
  if (payload !== expected) {
    throw new DatasetError(
      file,
      `IDX payload is ${payload} bytes but the header's dims [${dims.join(', ')}] need ${expected}`,
      { hint: 'the file is truncated or padded; download it again' },
    );
  }
  return { dims, data: bytes.subarray(4 + 4 * ndims) };
}

export function readIdx(path: string): IdxArray {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new DatasetError(
      path,
      `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      {
        cause: e,
      },
    );
  }
  return parseIdx(buf, path);
}
