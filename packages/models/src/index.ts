export * from './params.js';
export * from './layers.js';
export * from './backbone.js';
export * from './resnet.js';
export * from './vit.js';
export * from './encoder.js';
export * from './heads.js';
export * from './torch-names.js';
