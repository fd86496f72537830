// Stopping `torchd start` at once: the documented way is a second SIGTERM/SIGINT while the first one
// drains. With explanations running on the native executor threads, the process must still end with
// the code the CLI chooses for it (1: "stopped before draining"), never a signal. Before the exit hook
// (native/addon/addon.cpp) this died with SIGSEGV in 10 of 10 tries.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { makeModelStore } from '../http/_server.js';
import { spawnTorchd } from '../_torchd-child.js';

const DIGIT = readFileSync(fileURLToPath(new URL('../fixtures/models/images/4.png', import.meta.url)));
const ROUNDS = 3;
const IN_FLIGHT = 6;

interface Round {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

async function stopTwiceWhileExplaining(store: string): Promise<Round> {
  const torchd = spawnTorchd(
    ['start', '--model-store', store, '--models', 'mnist=mnist.mar', '--inference-address', 'http://127.0.0.1:0',
      '--management-address', 'http://127.0.0.1:0', '--metrics-address', 'http://127.0.0.1:0', '--foreground'],
    // gRPC stays on (it drains with HTTP) but on free ports, so parallel test files never collide on 7070/7071.
    { env: { ...process.env, TS_GRPC_INFERENCE_PORT: '0', TS_GRPC_MANAGEMENT_PORT: '0' } },
  );
  const ready = (await torchd.waitFor('torchd ready')).addresses as { inference: string };
  // n_steps at the cap: each explanation keeps an executor thread busy for a while.
  const requests = Array.from({ length: IN_FLIGHT }, () =>
    fetch(`${ready.inference}/explanations/mnist?n_steps=1024`, { method: 'PUT', body: DIGIT }).then(
      (r) => r.status,
      () => 'reset',
    ),
  );
  // Long enough for the requests to be decoded and the first explanations to reach the executor.
  await new Promise((r) => setTimeout(r, 400));
  torchd.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 50));
  torchd.child.kill('SIGTERM');
  const timer = setTimeout(() => void torchd.kill(), 30_000);
  const { code, signal } = await torchd.exited;
  clearTimeout(timer);
  await Promise.all(requests);
  return { code, signal, stderr: torchd.stderr() };
}

test(`a second SIGTERM with ${IN_FLIGHT} explanations in flight exits with code 1, never a signal (${ROUNDS} rounds)`, async (t) => {
  t.timeout(240_000);
  const store = await makeModelStore(['mnist']);
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const result = await stopTwiceWhileExplaining(store);
      t.is(result.signal, null, `round ${round}: killed by ${result.signal}\n${result.stderr.slice(-2000)}`);
      t.is(result.code, 1, `round ${round}: ${result.stderr.slice(-2000)}`);
    }
  } finally {
    await rm(store, { recursive: true, force: true });
  }
});
