// Scans a slice of a SharedArrayBuffer for a byte that is not there: Buffer.indexOf is a native
// SIMD memchr, so this measures what memory can deliver to one thread, not what a JS loop can sum.
import { parentPort, workerData } from 'node:worker_threads';

const { buffer, begin, end, repeats } = workerData;
const bytes = Buffer.from(buffer, begin, end - begin);
parentPort.postMessage('ready');
parentPort.once('message', () => {
  const t0 = performance.now();
  let found = 0;
  for (let r = 0; r < repeats; r++) found += bytes.indexOf(1);
  parentPort.postMessage({ ms: performance.now() - t0, found });
});
