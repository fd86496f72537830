// The server's V8 heap growth. After each full GC, V8 sets the next limit to the live size times a factor it picks
// from how cheap collection looked (mutator utilisation): on a model server the live heap is small (≈ 22 MB)
// and GC looks cheap, so it picks 1.1. But the limit also counts external memory — every request's body, socket
// chunks and pixel tensor are ArrayBuffers — so a ResNet-18 JPEG request stream ran a mark-compact every ≈ 10
// requests, and their concurrent marking ran on the cores LibTorch's workers need (≈ 4 ms of CPU per request of
// ≈ 33; bench/NOTES.md §33). A fixed factor trades a few tens of MB of heap for most of that.
import v8 from 'node:v8';

const FLAG = /^--heap[-_]growing[-_]percent(=|$)/;

/**
 * Sets V8's heap growing factor to 1 + percent/100 (0: V8's own dynamic factor) unless the process was started
 * with --heap-growing-percent (node's own flag wins). Returns what applies: the percent, or 'command line'.
 * V8 reads the flag whenever it computes a limit, so setting it at start-up, before any request, is enough.
 */
export function settleHeapGrowth(percent: number, execArgv: readonly string[] = process.execArgv): number | 'command line' {
  if (execArgv.some((a) => FLAG.test(a))) return 'command line';
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}
