// The CI-sized soak (issue 9 item 4): a few thousand mixed requests (predictions and explanations over
// the TorchServe, KServe v1 and v2 routes, health, bad inputs) with register/unregister and scale
// cycles, against a real `torchd start`: every answer is the intended one, RSS stays bounded, and the
// server still exits 0 on SIGTERM. `npm run soak` runs the same mix 100 000 times (bench/results/).
import test from 'ava';
import { KINDS, makeSoakStore, removeSoakStore, runSoak, startSoakServer } from '../../bench/lib/soak.js';

const REQUESTS = 4000;
// Growth allowed from the end of warm-up to the end of this short run. The heap and allocator
// arenas are still settling here (the 100 000-request run shows the plateau, bench/results/*-soak.md);
// a per-request leak of even 10 KiB would add 35 MiB over the 3 600 measured requests.
const RSS_GROWTH_LIMIT_MIB = 32;

test('a few thousand mixed requests and register/unregister/scale cycles: only intended answers, bounded RSS', async (t) => {
  const store = await makeSoakStore();
  const server = await startSoakServer(store);
  try {
    const r = await runSoak(server, { requests: REQUESTS, concurrency: 8, cycles: 3, samples: 100 });
    t.deepEqual(r.unexpectedSamples, [], `${r.unexpected} unintended answers`);
    t.is(r.unexpected, 0);
    t.deepEqual(r.cycles.problems, []);
    t.is(r.cycles.done, 3);
    // Every kind ran, each with its one intended status (404 and 400s included).
    t.deepEqual(
      r.kinds.map((k) => [k.name, Object.keys(k.statuses)]),
      KINDS.map((k) => [k.name, [String(k.expect)]]),
    );
    t.is(r.kinds.reduce((n, k) => n + k.count, 0), REQUESTS);
    const growth = r.rss.endMiB - r.rss.afterWarmupMiB;
    t.log(`RSS ${r.rss.afterWarmupMiB.toFixed(1)} → ${r.rss.endMiB.toFixed(1)} MiB (${r.rss.driftPct.toFixed(2)} %), ${r.requestsPerSecond.toFixed(0)} req/s`);
    t.true(growth < RSS_GROWTH_LIMIT_MIB, `RSS grew ${growth.toFixed(1)} MiB after warm-up (limit ${RSS_GROWTH_LIMIT_MIB} MiB)`);
    const exit = await server.stop();
    t.deepEqual(exit, { code: 0, signal: null }, server.stderr());
  } finally {
    await server.stop();
    await removeSoakStore(store);
  }
});
