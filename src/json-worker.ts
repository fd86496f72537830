// Worker thread of the JSON pool (bounded-json.ts parseJsonBoundedAsync): the bound scan and JSON.parse of one
// large body, off the event loop. Rectangular numeric arrays go back as Float64Arrays by transfer, the rest of the
// value by structured clone (small once the arrays are out of it).
import { packNumericArrays, parseJsonBounded, type JsonParseRequest } from './bounded-json.js';
import { serveRequests } from './handlers/worker-pool.js';

serveRequests(
  async (request) => {
    const { bytes, bounds, what } = request as JsonParseRequest;
    const parsed = parseJsonBounded(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), bounds, what);
    const { value, packs } = packNumericArrays(parsed);
    return { result: { value, packs }, transfer: packs.map((p) => p.data.buffer as ArrayBuffer) };
  },
  (err) => ({ status: 500, type: 'InternalServerException', message: `JSON parsing failed: ${err.name}: ${err.message}` }),
);
