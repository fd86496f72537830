// Worker thread of the response encoder pool (response-encoder.ts): a large tensor → its JSON text as UTF-8, or an
// explanation → its heatmap PNG; the bytes go back by transfer.
import type { EncodeRequest } from './response-encoder.js';
import { renderHeatmap } from './heatmap.js';
import { TensorJson, tensorJsonText } from './output.js';
import { serveRequests } from './worker-pool.js';

serveRequests(
  async (request) => {
    const r = request as EncodeRequest;
    // A fresh Uint8Array over its own ArrayBuffer: sharp's Buffer may share a pooled one, which cannot be transferred.
    const bytes = r.op === 'json'
      ? new TextEncoder().encode(tensorJsonText(new TensorJson(r.tensor, r.dropDims, r.flat)))
      : new Uint8Array(await renderHeatmap(r.source, r.options));
    return { result: bytes, transfer: [bytes.buffer] };
  },
  (err) => ({ status: 500, type: 'InternalServerException', message: `Encoding the response failed: ${err.name}: ${err.message}` }),
);
