// serializeJson writes big bodies in slices with event-loop yields in between: the text must be exactly
// JSON.stringify's, whatever the shape (long flat arrays are sliced too), and other work must get the loop.
import test from 'ava';
import { OrderedJson, serializeJson, serializeJsonBuffer } from '../../src/handlers/index.js';

const values = (n: number, seed = 1) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 12.9898 + seed) * 1e-3));

for (const n of [0, 1, 4095, 4096, 4097, 12_289, 150_528]) {
  test(`a flat array of ${n} numbers is written exactly as JSON.stringify`, async (t) => {
    const v = values(n);
    t.is(await serializeJson(v), JSON.stringify(v));
  });
}

test('nested attributions, NaN/Infinity (null), objects and OrderedJson keep JSON.stringify\'s text and label order', async (t) => {
  const nested = [0, 1, 2].map((c) => Array.from({ length: 50 }, (_, r) => values(60, c * 100 + r)));
  const flat = [...values(9000), NaN, Infinity, -0];
  const body = { explanations: [nested], flat, mixed: [1, 'a', null, { b: [2, 3] }] };
  t.is(await serializeJson(body), JSON.stringify(body));
  const top = new OrderedJson([['281', 0.5], ['10', 0.3], ['tabby', 0.2]]);
  t.is(await serializeJson(top), '{"281":0.5,"10":0.3,"tabby":0.2}');
});

test('other callbacks run while a 150k-number body is written (the loop is yielded to)', async (t) => {
  // A callback that re-arms itself with setImmediate runs once per loop turn: it counts the turns.
  let turns = 0;
  let on = true;
  const spin = () => { turns++; if (on) setImmediate(spin); };
  setImmediate(spin);
  const text = await serializeJson([values(150_528)]);
  on = false;
  t.is(text.length, JSON.stringify([values(150_528)]).length);
  // 150 528 / 4096 → 37 slices, each followed by a yield.
  t.true(turns >= 30, `${turns} loop turns during serialisation`);
});

test('serializeJsonBuffer is serializeJson\'s text as UTF-8, for small bodies, big ones and non-ASCII labels', async (t) => {
  const big = { explanations: [[values(20_000), values(3)]], label: 'Größe ✓' };
  for (const body of [big, new OrderedJson([['chat égyptien', 0.9], ['7', 0.1]]), 42, [values(5000)]]) {
    const buf = await serializeJsonBuffer(body);
    t.true(Buffer.isBuffer(buf));
    t.is(buf.toString('utf8'), await serializeJson(body));
  }
});
