/** One benchmark row: a step kind on one input shape, batch and queue size. */
export interface RowSpec {
  /** 'moco': the full MoCo step; 'encoder': the query encoder's forward + backward + SGD alone. */
  mode: 'moco' | 'encoder';
  height: number;
  width: number;
  channels: number;
  batch: number;
  /** K (MoCo rows). */
  queue?: number;
  /** Untimed steps first (kernel selection, allocator warm-up). */
  warmup: number;
  /** Timed steps; img/s is the batch over their median time. */
  steps: number;
  /** 'gpu': both sides on the GPU (ours on the tensorflow-gpu backend); absent: the CPU. */
  device?: 'gpu';
}

/** What a worker reports for one row. */
export interface RowResult {
  framework: string;
  threads?: number;
  stepSeconds: number[];
  imgPerSec: number;
  peakRssMb: number;
  matmulGflops: number;
  /** Ours only: mean seconds per phase of the step, over the profiled steps. */
  breakdown?: Record<string, number>;
  /** Ours only: tf.memory().numTensors after each timed step. */
  tensorsAfterStep?: number[];
  /** Ours only: the augmentation pipeline alone (gather + two views), images per second. */
  augImgPerSec?: number;
  /** Ours only: steps that also draw and augment their batch, images per second (median). */
  trainImgPerSec?: number;
  /** Ours only: InfoNCE logits + loss forward and backward alone, seconds (MoCo rows). */
  logitsSeconds?: number;
}

export function rowName(r: RowSpec): string {
  const shape = `${r.height}x${r.width}x${r.channels}`;
  return r.mode === 'moco'
    ? `moco ${shape} b${r.batch} K${r.queue}`
    : `encoder ${shape} b${r.batch}`;
}

/**
 * The grid: the MoCo step and the raw encoder step (ResNet-18, CIFAR stem) on
 * 32x32x3 and 28x28x1, batch 128 and 256, K 4096 and 65536 (MoCo rows).
 */
export function defaultRows(options: { warmup: number; steps: number }): RowSpec[] {
  const rows: RowSpec[] = [];
  for (const [height, width, channels] of [
    [32, 32, 3],
    [28, 28, 1],
  ] as const) {
    for (const batch of [128, 256]) {
      for (const queue of [4096, 65536]) {
        rows.push({ mode: 'moco', height, width, channels, batch, queue, ...options });
      }
      rows.push({ mode: 'encoder', height, width, channels, batch, ...options });
    }
  }
  return rows;
}

/** The rows of the reference table (32x32x3, K 4096): MoCo b128 and b256, encoder b128. */
export function quickRows(options: { warmup: number; steps: number }): RowSpec[] {
  const base = { height: 32, width: 32, channels: 3, ...options } as const;
  return [
    { mode: 'moco', batch: 128, queue: 4096, ...base },
    { mode: 'moco', batch: 256, queue: 4096, ...base },
    { mode: 'encoder', batch: 128, ...base },
  ];
}

/** The median (NaN for no values). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
