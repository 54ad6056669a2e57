export * from './params.js';
export * from './layers.js';
export * from './resnet.js';
export * from './predictor.js';
export * from './torch-names.js';
