import { ConfigError } from '@contrast/core';
import type { TorchTensor } from '@contrast/models';

const DTYPES = { float32: 'F32', int64: 'I64' } as const;

/**
 * Tensors in the safetensors format (huggingface/safetensors, "Format"): an
 * unsigned 64-bit little-endian header size N, an N-byte UTF-8 JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`
 * padded with spaces to a multiple of 8, then the little-endian C-order data,
 * offsets relative to the end of the header. `safetensors.torch.load_file`
 * reads it into a state_dict.
 */
export function encodeSafetensors(
  tensors: readonly TorchTensor[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    if (t.name in header) throw new ConfigError('safetensors', `duplicate tensor name '${t.name}'`);
    const bytes = t.data.byteLength;
    header[t.name] = {
      dtype: DTYPES[t.dtype],
      shape: t.shape,
      data_offsets: [offset, offset + bytes],
    };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/**
 * Reads a safetensors file of F32 / I64 tensors (what `encodeSafetensors` writes).
 * @throws ConfigError for a malformed header or another dtype.
 */
export function decodeSafetensors(buf: Uint8Array): {
  tensors: TorchTensor[];
  metadata: Record<string, string>;
} {
  const n = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
  if (8 + n > buf.length) throw new ConfigError('safetensors', 'header runs past the end');
  const header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const { __metadata__: metadata, ...entries } = header as Record<string, never>;
  const tensors: TorchTensor[] = Object.entries(entries).map(([name, e]) => {
    const {
      dtype,
      shape,
      data_offsets: [b, end],
    } = e as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    const bytes = buf.slice(8 + n + b, 8 + n + end).buffer as ArrayBuffer;
    if (dtype === 'F32') return { name, shape, dtype: 'float32', data: new Float32Array(bytes) };
    if (dtype === 'I64') return { name, shape, dtype: 'int64', data: new BigInt64Array(bytes) };
    throw new ConfigError(
      'safetensors',
      `tensor '${name}' has dtype ${dtype}; only F32 and I64 are read`,
    );
  });
  return { tensors, metadata: (metadata ?? {}) as Record<string, string> };
}
