// @sessiond/client: the Node.js client of sessiond (docs/node-client.md).
export { SessiondClient, Sessions, Queue, Cache } from './client.js';
export { Worker, UnrecoverableError } from './worker.js';
export { SessiondStore } from './store.js';
export { diffMergePatch, applyMergePatch } from './merge.js';
export * from './errors.js';
