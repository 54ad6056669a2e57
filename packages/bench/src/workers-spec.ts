/** One process of a `pnpm bench --workers N` row (workers-child.ts). */
export interface WorkersRowSpec {
  /** The experiment file (the default experiment: experiments/moco-fmnist.yaml). */
  experiment: string;
  /** `--set` overrides after it (e.g. another encoder). */
  overrides: string[];
  /** The global batch (optim.batchSize); each of N workers steps on batch / N. */
  batch: number;
  warmup: number;
  steps: number;
  /** The loopback cluster this process joins; absent: one process. */
  cluster?: string[];
  rank?: number;
}

/** What one process measured (seconds are medians over the timed steps). */
export interface WorkersRowResult {
  /** TF_NUM_INTRAOP_THREADS of the process. */
  threads: number;
  stepSeconds: number[];
  /** Global batch over the median step time. */
  imgPerSec: number;
  /** Time in all-reduces per step (the gradient's, with the loss and metrics). */
  allReduceSeconds: number;
  /** Time in all-gathers per step (shuffle BN's images and keys, the queue's keys). */
  gatherSeconds: number;
  /** Collective ops issued per step (each all-gather costs one or two). */
  collectivesPerStep: number;
  /** The size of the gradient all-reduced per step, in float32s. */
  gradientFloats: number;
  /** Workers only: the median all-reduce of one float (the ring's latency term). */
  tinyAllReduceSeconds?: number;
  /** Workers only: the median all-reduce of `gradientFloats` floats alone. */
  gradientAllReduceSeconds?: number;
}
