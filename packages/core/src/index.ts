export * from './errors.js';
export * from './contracts.js';
export * from './collectives.js';
export * from './datasets.js';
export * from './method.js';
export * from './optim.js';
export * from './tokens.js';
export * from './rng.js';
export * from './registry.js';
export * from './math.js';
export * from './queue.js';
export * from './state.js';
export * from './schema.js';
export * from './config.js';
export * from './views.js';
export * from './plugin.js';
export * from './compose.js';
export * from './key-encoders.js';
export * from './losses.js';
export * from './paired-method.js';
export * from './bank.js';
export * from './sources.js';
export * from './contrastive-method.js';
/**
 * The tfjs and zod a plugin should use: the same instances Contrast runs on (a
 * second copy of tfjs would have its own engine and backend).
 */
export * as tf from '@tensorflow/tfjs';
export { z } from 'zod';
export * from './paired-losses.js';
export * from './swapped-prediction.js';
export * from './dino.js';
