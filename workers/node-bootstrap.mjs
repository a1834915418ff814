// Node only: worker threads do not inherit the parent's TypeScript loader, so register tsx's
// ESM hooks in this thread before importing the (TypeScript) worker named in workerData.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
