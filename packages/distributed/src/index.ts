export { DistributedError } from '@contrast/core';
export * from './cluster.js';
export * from './collectives.js';
export * from './join.js';
export { encodeServerDef, taskName, JOB_NAME } from './server-def.js';
