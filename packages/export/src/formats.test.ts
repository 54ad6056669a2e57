import { describe, expect, it } from 'vitest';
import { unzipSync } from 'fflate';
import { decodeNpy, encodeNpy, encodeNpz } from './npy.js';
import { decodeSafetensors, encodeSafetensors } from './safetensors.js';

describe('NumPy .npy / .npz', () => {
  it('writes format 1.0 byte for byte: magic, header dict padded to 64, C-order little-endian data', () => {
    const buf = encodeNpy(Float32Array.of(1, -2, 0.5, 3), [2, 2]);
    expect(Array.from(buf.subarray(0, 8))).toEqual([0x93, 78, 85, 77, 80, 89, 1, 0]); // \x93NUMPY 1.0
    const hlen = buf[8]! + 256 * buf[9]!;
    expect((10 + hlen) % 64).toBe(0);
    const header = Buffer.from(buf.subarray(10, 10 + hlen)).toString('latin1');
    expect(header.trimEnd()).toBe("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }");
    expect(header.endsWith('\n')).toBe(true);
    expect(buf.length).toBe(10 + hlen + 16);
    // 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 (IEEE 754, little-endian)
    expect(Array.from(buf.subarray(10 + hlen, 10 + hlen + 8))).toEqual([
      0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0,
    ]);
    const one = Buffer.from(encodeNpy(Int32Array.of(7), [1]).subarray(10, 80)).toString('latin1');
    expect(one).toContain("'descr': '<i4', 'fortran_order': False, 'shape': (1,), }"); // 1-tuples keep the comma
  });

  it('round-trips, refuses a shape that does not fit, and zips .npz members by name', () => {
    const back = decodeNpy(encodeNpy(BigInt64Array.of(5n, -1n), [2]));
    expect(back.shape).toEqual([2]);
    expect(Array.from(back.data as BigInt64Array)).toEqual([5n, -1n]);
    // a file read with readFileSync: a Buffer, whose slice() is a view, not a copy
    const file = Buffer.from(encodeNpy(Float32Array.of(0.25, -3), [2]));
    expect(Array.from(decodeNpy(file).data as Float32Array)).toEqual([0.25, -3]);
    expect(() => encodeNpy(Float32Array.of(1, 2, 3), [2, 2])).toThrow(/holds 4 values, not 3/);
    const npz = unzipSync(
      encodeNpz(new Map([['layer1/0/conv1/w', { data: Float32Array.of(1, 2), shape: [1, 2] }]])),
    );
    expect(Object.keys(npz)).toEqual(['layer1/0/conv1/w.npy']);
    expect(Array.from(decodeNpy(npz['layer1/0/conv1/w.npy']!).data as Float32Array)).toEqual([
      1, 2,
    ]);
  });
});

describe('safetensors', () => {
  it('writes the u64 header size, a JSON header padded to 8 bytes, and data at its offsets', () => {
    const buf = encodeSafetensors(
      [
        { name: 'fc.weight', shape: [2], dtype: 'float32', data: Float32Array.of(1, 2) },
        { name: 'bn1.num_batches_tracked', shape: [], dtype: 'int64', data: BigInt64Array.of(9n) },
      ],
      { format: 'pt' },
    );
    const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString('utf8'));
    expect(header).toEqual({
      __metadata__: { format: 'pt' },
      'fc.weight': { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      'bn1.num_batches_tracked': { dtype: 'I64', shape: [], data_offsets: [8, 16] },
    });
    expect(buf.length).toBe(8 + n + 16);
    expect(new DataView(buf.buffer).getFloat32(8 + n + 4, true)).toBe(2);
    expect(new DataView(buf.buffer).getBigInt64(8 + n + 8, true)).toBe(9n);
    const back = decodeSafetensors(buf);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect(back.tensors.map((t) => t.name)).toEqual(['fc.weight', 'bn1.num_batches_tracked']);
    expect(() =>
      encodeSafetensors([
        { name: 'a', shape: [1], dtype: 'float32', data: Float32Array.of(1) },
        { name: 'a', shape: [1], dtype: 'float32', data: Float32Array.of(1) },
      ]),
    ).toThrow(/duplicate tensor name 'a'/);
  });
});
