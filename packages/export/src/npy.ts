import { zipSync } from 'fflate';
import { ConfigError } from '@contrast/core';

/** Arrays NumPy reads: float32 (`<f4`), int32 (`<i4`), int64 (`<i8`), uint8 (`|u1`). */
export type NpyData = Float32Array | Int32Array | BigInt64Array | Uint8Array;

const DESCR: [new (n: number) => NpyData, string][] = [
  [Float32Array, '<f4'],
  [Int32Array, '<i4'],
  [BigInt64Array, '<i8'],
  [Uint8Array, '|u1'],
];

function descr(data: NpyData): string {
  const d = DESCR.find(([ctor]) => data instanceof ctor);
  if (!d) throw new ConfigError('npy', 'unsupported array type');
  return d[1];
}

/**
 * One array in NumPy's .npy format, version 1.0 (numpy/lib/format.py): the magic
 * `\x93NUMPY`, a little-endian header length, a Python dict literal
 * `{'descr', 'fortran_order': False, 'shape'}` padded with spaces to a multiple
 * of 64 bytes and ended by a newline, then the C-order little-endian data.
 * @throws ConfigError when `shape` does not match the data's length.
 */
export function encodeNpy(data: NpyData, shape: readonly number[]): Uint8Array {
  const count = shape.reduce((p, d) => p * d, 1);
  if (count !== data.length) {
    throw new ConfigError(
      'npy',
      `shape [${shape.join(', ')}] holds ${count} values, not ${data.length}`,
    );
  }
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '${descr(data)}', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY v1.0
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

/**
 * Reads what `encodeNpy` writes (version 1.0, C order, the four dtypes above).
 * @throws ConfigError on anything else.
 */
export function decodeNpy(buf: Uint8Array): { data: NpyData; shape: number[] } {
  const bad = (why: string) =>
    new ConfigError('npy', `not a readable .npy file: ${why}`, {
      hint: 'write it with numpy.save',
    });
  if (buf[0] !== 0x93 || Buffer.from(buf.subarray(1, 6)).toString('latin1') !== 'NUMPY') {
    throw bad('bad magic');
  }
  const hlen = new DataView(buf.buffer, buf.byteOffset).getUint16(8, true);
  const header = Buffer.from(buf.subarray(10, 10 + hlen)).toString('latin1');
  const m = /'descr': '([<|]\w\d)', 'fortran_order': False, 'shape': \(([\d, ]*)\)/.exec(header);
  const d = m && DESCR.find(([, s]) => s === m[1]);
  if (!m || !d) throw bad(`unsupported header ${header.trim()}`);
  const shape = m[2]!
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .map(Number);
  const bytes = new Uint8Array(buf.subarray(10 + hlen)); // a copy, aligned (Buffer#slice is a view)
  const Ctor = d[0] as unknown as { new (b: ArrayBuffer): NpyData; BYTES_PER_ELEMENT: number };
  return { data: new Ctor(bytes.buffer as ArrayBuffer), shape };
}

/**
 * Several arrays as an .npz (numpy.savez: a ZIP of `<name>.npy` members,
 * stored uncompressed). `numpy.load(path)[name]` reads each back.
 */
export function encodeNpz(
  arrays: ReadonlyMap<string, { data: NpyData; shape: readonly number[] }>,
): Uint8Array {
  const files: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const [name, a] of arrays) files[`${name}.npy`] = [encodeNpy(a.data, a.shape), { level: 0 }];
  return zipSync(files);
}
