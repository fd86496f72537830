// Shared by the service tests that time the server's event loop from outside: a /ping poller on its own thread.
// Not a test file (no .test. in its name).
import { Worker } from 'node:worker_threads';

/**
 * Polls `${url}/ping` from a worker thread (its own event loop, so building and sending a large request here never
 * delays a ping) until stopped; resolves with the slowest answer in ms.
 */
export function startPinger(url: string): { stop(): Promise<number> } {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     let stopped = false, max = 0;
     parentPort.on('message', () => { stopped = true; });
     (async () => {
       while (!stopped) {
         const t0 = performance.now();
         await (await fetch(workerData.url + '/ping')).text();
         max = Math.max(max, performance.now() - t0);
         await new Promise((r) => setTimeout(r, 5));
       }
       parentPort.postMessage(max);
     })();`,
    { eval: true, workerData: { url } },
  );
  return {
    stop: () => new Promise<number>((resolve) => {
      worker.once('message', (max: number) => void worker.terminate().then(() => resolve(max)));
      worker.postMessage('stop');
    }),
  };
}
