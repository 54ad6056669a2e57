import { readFileSync } from 'node:fs';
import { dump, parse } from 'npyjs';
import { writeFileAtomic } from '@contrast/core';

/** An array handed to or from PyTorch as a NumPy .npy file (C order). */
export interface NpyArray {
  data: Float32Array | Int32Array | Uint8Array;
  shape: number[];
}

/** Writes `a` as a .npy file (float32, int32 or uint8, by the typed array), atomically. */
export function writeNpy(path: string, a: NpyArray): void {
  writeFileAtomic(path, new Uint8Array(dump(a.data, a.shape)));
}

/** Reads a float32, int32 or uint8 .npy file written by NumPy. */
export function readNpy(path: string): NpyArray {
  const bytes = readFileSync(path);
  const arr = parse(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  if (arr.fortranOrder) throw new Error(`${path}: Fortran-order arrays are not supported`);
  const data = arr.data;
  if (!(data instanceof Float32Array || data instanceof Int32Array || data instanceof Uint8Array)) {
    throw new Error(`${path}: expected float32, int32 or uint8, found ${arr.dtype}`);
  }
  return { data, shape: arr.shape };
}
