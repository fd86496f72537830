// The seed document's curl commands (scripts/seed-curl.sh) against a real server with the demo's models.
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startTestServer, type TestServer } from './_server.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/seed-curl.sh', import.meta.url));

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist', 'mnist-v2', 'resnet-18']);
});
test.after.always(async () => {
  await srv?.close();
});

test('every seed curl command answers with the documented status and shape', async (t) => {
  const { stdout } = await promisify(execFile)('bash', [SCRIPT, srv.url], { timeout: 120_000 }).catch((err) => {
    t.fail(`seed-curl.sh failed:\n${err.stdout}\n${err.stderr}`);
    return { stdout: '' };
  });
  const lines = stdout.trim().split('\n');
  t.is(lines.filter((l) => l.startsWith('ok ')).length, 12, stdout);
  t.is(lines.filter((l) => l.startsWith('FAIL')).length, 0, stdout);
  t.is(lines.at(-1), `all seed commands answered as documented by ${srv.url}`);
});
