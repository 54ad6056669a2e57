export * from './idx.js';
export * from './fashion-mnist.js';
export * from './augment.js';
export * from './transforms.js';
export * from './batches.js';
export * from './binary-datasets.js';
export * from './image-folder.js';
