import { readFileSync } from 'node:fs';
import { ConfigError, writeFileAtomic } from '@contrast/core';
import { decodeNpy, encodeNpy } from '@contrast/export';

/** An array handed to or from PyTorch as a NumPy .npy file (C order). */
export interface NpyArray {
  data: Float32Array | Int32Array | Uint8Array;
  shape: number[];
}

/** Writes `a` as a .npy file (float32, int32 or uint8, by the typed array), atomically. */
export function writeNpy(path: string, a: NpyArray): void {
  writeFileAtomic(path, encodeNpy(a.data, a.shape));
}

/**
 * Reads a float32, int32 or uint8 .npy file written by NumPy (`decodeNpy`).
 * @throws ConfigError for another dtype or a Fortran-order array.
 */
export function readNpy(path: string): NpyArray {
  const { data, shape } = decodeNpy(readFileSync(path));
  if (data instanceof BigInt64Array) {
    throw new ConfigError('npy', `${path}: expected float32, int32 or uint8, found int64`);
  }
  return { data, shape };
}
