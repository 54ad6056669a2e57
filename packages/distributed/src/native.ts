import * as tf from '@tensorflow/tfjs';
import { COLLECTIVES_FIX } from '@contrast/backend';
import { DistributedError } from '@contrast/core';

/** An op attribute as tfjs-node's `executeOp` takes it. */
export interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

/** The parts of tfjs-node's binding the collectives use (packages/backend/patches). */
export interface CollectiveBinding {
  TF_ATTR_TYPE: number;
  TF_ATTR_FLOAT: number;
  TF_ATTR_STRING: number;
  TF_ATTR_INT: number;
  TF_FLOAT: number;
  TF_INT32: number;
  enableCollectiveOps(serverDef: Uint8Array): void;
  collectiveOpsCheckPeerHealth(task: string, timeoutMs: number): void;
  abortCollectiveOps(code: number, message: string): void;
}

/** tfjs-node's backend: ops by name on tensor ids, without copies. */
export interface CollectiveBackend {
  binding: CollectiveBinding;
  executeSingleOutput(name: string, attrs: OpAttr[], inputs: tf.Tensor[]): tf.Tensor;
}

/** TF_Code UNAVAILABLE: the abort's reason after a lost peer. */
export const TF_UNAVAILABLE = 14;

/**
 * The active tfjs backend when it is tfjs-node with the collective ops.
 * @throws DistributedError with the fix otherwise (another backend, an unpatched binding).
 */
export function collectiveBackend(): CollectiveBackend {
  const name = tf.getBackend();
  if (name !== 'tensorflow') {
    throw new DistributedError(
      `data-parallel training needs the native TensorFlow backend; the active backend is '${name}'`,
      { hint: "run 'contrast setup' and 'contrast doctor'; do not set CONTRAST_BACKEND=cpu" },
    );
  }
  const backend = tf.backend() as unknown as Partial<CollectiveBackend>;
  if (typeof backend.binding?.enableCollectiveOps !== 'function') {
    throw new DistributedError('the tfjs-node binding lacks the collective ops', {
      hint: COLLECTIVES_FIX,
    });
  }
  return backend as CollectiveBackend;
}
