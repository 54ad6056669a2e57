/** What one side records after each step. */
export interface StepRecord {
  loss: number;
  /** L2 norm of the gradient per parameter group (torch module: stem, layer1..4, fc, predictor). */
  gradNorms: Record<string, number>;
  /** The BN running statistics of the query / online (and key / target) network, concatenated in `bnOrder`. */
  bn: Float32Array;
  /** The queue or bank after the step (when the method has one). */
  state?: Float32Array;
  /**
   * PyTorch's synced records only (python/step.py compares the updates
   * itself): Contrast's optimizer step ('update': torch.optim.SGD applied to
   * Contrast's gradient and state) and EMA ('ema': the method's EMA of Contrast's
   * key / target towards Contrast's updated network), each as the relative
   * difference of the update from Contrast's and, in float64, from PyTorch float32's.
   */
  updates?: Partial<Record<'update' | 'ema', { contrast: number; float32?: number }>>;
  /**
   * Contrast's synced records only: its own float32 noise at this step, the
   * relative differences between this step and the same step from the same state
   * on the batch in reverse order (the same mathematics, other summation orders).
   */
  selfNoise?: Record<'loss' | 'gradNorm' | 'bn', number>;
}
