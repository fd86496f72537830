// The seed document's commands, verbatim (scripts/seed-curl.sh), against a real server with the demo's model
// store (scripts/demo-store.ts): with ../shared/data, the seed's own files and real-weight answers; without
// it, the committed stand-ins and the shapes only.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { demoModels, writeDemoStore } from '../../scripts/demo-store.js';
import { startOnStore, type TestServer } from './_server.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/seed-curl.sh', import.meta.url));
const SEED_COMMANDS = 13;

let srv: TestServer;
test.before(async () => {
  const store = await mkdtemp(join(tmpdir(), 'torchd-seed-store-'));
  const image = await writeDemoStore(store);
  console.log(`seed-curl.test.ts: image names served by ${image.description}`);
  srv = await startOnStore(store, demoModels(image));
});
test.after.always(async () => {
  await srv?.close();
});

test('every seed command, verbatim, answers as the seed documents', async (t) => {
  const { stdout } = await promisify(execFile)('bash', [SCRIPT, srv.url], { timeout: 120_000 }).catch((err) => {
    t.fail(`seed-curl.sh failed:\n${err.stdout}\n${err.stderr}`);
    return { stdout: '' };
  });
  t.log(stdout.split('\n')[0]);
  const lines = stdout.trim().split('\n');
  t.is(lines.filter((l) => l.startsWith('ok ')).length, SEED_COMMANDS, stdout);
  t.is(lines.filter((l) => l.startsWith('FAIL')).length, 0, stdout);
  t.is(lines.at(-1), `all ${SEED_COMMANDS} seed commands answered as documented by ${srv.url}`);
});
