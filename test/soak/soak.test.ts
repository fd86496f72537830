// The CI-sized soak (issue 9 item 4): a few thousand mixed requests (predictions and explanations over
// the TorchServe, KServe v1 and v2 routes, health, bad inputs) with register/unregister and scale
// cycles, against a real `torchd start`: every answer is the intended one, RSS stays bounded, and the
// server still exits 0 on SIGTERM. `npm run soak` runs the same mix 100 000 times (bench/results/).
import test from 'ava';
import { KINDS, makeSoakStore, removeSoakStore, runSoak, startSoakServer } from '../../bench/lib/soak.js';

// The first half is warm-up: the V8 heap grows its committed size for the first few thousand requests
// of this mix (bench/results/*-soak.md shows it level off), which says nothing about leaks.
const REQUESTS = 6000;
const WARMUP = 0.5;
// Growth allowed over the 3 000 measured requests, outside the V8 heap (where a native leak shows;
// noise there is about ±10 MiB) and in all (in a run this short the V8 heap is still growing its
// committed size: up to 45 MiB of total growth was seen with flat memory outside it, NOTES §21).
// A leak of 8 KiB per request breaks the first bound (a 16 KiB one was tried: +33 MiB outside the heap).
const REST_GROWTH_LIMIT_MIB = 24;
const RSS_GROWTH_LIMIT_MIB = 64;

test('a few thousand mixed requests and register/unregister/scale cycles: only intended answers, bounded RSS', async (t) => {
  const store = await makeSoakStore();
  const server = await startSoakServer(store);
  try {
    const r = await runSoak(server, { requests: REQUESTS, concurrency: 8, cycles: 3, samples: 100, warmupFraction: WARMUP });
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
    const restGrowth = r.rss.restEndMiB - r.rss.restAfterWarmupMiB;
    t.log(
      `RSS ${r.rss.afterWarmupMiB.toFixed(1)} → ${r.rss.endMiB.toFixed(1)} MiB (${r.rss.driftPct.toFixed(2)} %), outside the V8 heap ` +
        `${r.rss.restAfterWarmupMiB.toFixed(1)} → ${r.rss.restEndMiB.toFixed(1)} MiB; ${r.requestsPerSecond.toFixed(0)} req/s`,
    );
    t.true(Number.isFinite(restGrowth), 'the V8 heap gauges were scraped');
    t.true(restGrowth < REST_GROWTH_LIMIT_MIB, `RSS outside the V8 heap grew ${restGrowth.toFixed(1)} MiB after warm-up (limit ${REST_GROWTH_LIMIT_MIB} MiB)`);
    t.true(growth < RSS_GROWTH_LIMIT_MIB, `RSS grew ${growth.toFixed(1)} MiB after warm-up (limit ${RSS_GROWTH_LIMIT_MIB} MiB)`);
    const exit = await server.stop();
    t.deepEqual(exit, { code: 0, signal: null }, server.stderr());
  } finally {
    await server.stop();
    await removeSoakStore(store);
  }
});
