export * from './provision.js';
export * from './select.js';
export * from './doctor.js';
export * from './quiet.js';
