// topIndices (src/handlers/output.ts) against what it replaced: all indices sorted by (value desc, index asc), first k.
import test from 'ava';
import { topIndices } from '../../src/handlers/output.js';

const bySort = (v: number[], k: number) => v.map((_, i) => i).sort((a, b) => v[b] - v[a] || a - b).slice(0, Math.min(k, v.length));

// A fixed LCG: the cases are the same on every run.
function values(n: number, seed: number, levels: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return (x % levels) / levels;
  });
}

test('the k largest, largest first, ties in index order: the same indices as a full sort', (t) => {
  for (const [n, levels] of [[1000, 1e9], [1000, 7], [10, 2], [3, 1], [1, 5]]) {
    for (const k of [0, 1, 2, 5, 10, 999, 1000, 2000]) {
      for (const seed of [1, 42, 2026]) {
        const v = values(n, seed, levels);
        t.deepEqual(topIndices(v, k), bySort(v, k), `n ${n} levels ${levels} k ${k} seed ${seed}`);
      }
    }
  }
});

test('ascending, descending and constant inputs; NaN everywhere (softmax of an Infinity logit) keeps index order', (t) => {
  t.deepEqual(topIndices([1, 2, 3, 4, 5, 6], 3), [5, 4, 3]);
  t.deepEqual(topIndices([6, 5, 4, 3, 2, 1], 3), [0, 1, 2]);
  t.deepEqual(topIndices([0, 0, 0, 0], 2), [0, 1]);
  t.deepEqual(topIndices([NaN, NaN, NaN], 2), [0, 1]);
  t.deepEqual(topIndices(new Float32Array([0.1, 0.7, 0.2]), 5), [1, 2, 0]);
  t.deepEqual(topIndices([], 5), []);
});
