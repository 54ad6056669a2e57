export * from './provision.js';
export * from './select.js';
export * from './doctor.js';
export * from './lock.js';
export * from './quiet.js';
