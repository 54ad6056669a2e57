import * as tf from '@tensorflow/tfjs';
import type { Loss, LossInput, LossOutput } from './contracts.js';
import { ConfigError } from './errors.js';
import { infoNce, topOneAccuracy } from './math.js';

/** InfoNCE against an explicit set of negatives (queue rows or sampled bank rows). */
export class InfoNceLoss implements Loss {
  readonly name = 'infonce';
  compute({ query, positive, negatives, temperature }: LossInput): LossOutput {
    if (negatives === 'in-batch') {
      throw new ConfigError('loss.name', "'infonce' needs explicit negatives (a queue or a bank)", {
        hint: "use 'nt-xent' with in-batch negatives",
      });
    }
    if (!(temperature > 0))
      throw new ConfigError('loss.temperature', `must be > 0, got ${temperature}`);
    const { loss, logits } = infoNce({ query, positive, negatives, temperature });
    const accuracy = tf.tidy(() =>
      topOneAccuracy(logits, tf.zeros([logits.shape[0]], 'int32') as tf.Tensor1D),
    );
    logits.dispose();
    return { loss, accuracy };
  }
}
