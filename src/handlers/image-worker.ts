// Worker thread of the image pool (image.ts): decodes and preprocesses one image per request, off the event
// loop. The encoded bytes arrive by transfer; the float32 result goes back by transfer (no copy of the pixels).
import { preprocessImage, type ImageConfig } from './image-preprocess.js';
import { serveRequests } from './worker-pool.js';

export interface ImageRequest {
  bytes: Uint8Array;
  config: ImageConfig;
}

serveRequests(
  async (request) => {
    const { bytes, config } = request as ImageRequest;
    const tensor = await preprocessImage(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), config);
    const data = tensor.data as Float32Array;
    return { result: { data, shape: tensor.shape }, transfer: [data.buffer as ArrayBuffer] };
  },
  // Anything but a TorchdError is unexpected here; the input that caused it is still the likeliest culprit.
  (err) => ({ status: 400, type: 'BadRequestException', message: `Image preprocessing failed: ${err.name}: ${err.message}` }),
);
