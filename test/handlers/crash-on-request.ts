// Part of the crashing-image-worker.ts fixture: {crash: 'exit'} ends the worker thread with code 7,
// {crash: 'throw'} throws an uncaught error in it; other messages are left to the real image worker.
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', ({ request }: { request: { crash?: string } }) => {
  if (request.crash === 'exit') process.exit(7);
  if (request.crash === 'throw') throw new RangeError('fixture: worker crashed');
});
