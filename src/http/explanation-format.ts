// How an explanation answer is encoded: the attributions as JSON numbers (TorchServe's and KServe's form, the
// default), or PNG heatmaps (src/handlers/heatmap.ts) when the client asks for a picture. Shared by the TorchServe
// and KServe v1 codecs; the service renders, the codec only negotiates and wraps.
import type { Request, Response } from 'express';
import { BadRequestError } from '../errors.js';
import { pngDataUrl, type HeatmapOptions } from '../handlers/heatmap.js';
import { sendResult } from './respond.js';

/**
 * The heatmap options a request asks for, or undefined for JSON. `?format=png|json` decides when given; otherwise
 * the Accept header, when it prefers `image/png` to `application/json` (no Accept, or `*\/*`, stays JSON).
 * `?overlay=false` draws the colour map alone. Throws BadRequestError for other values of either.
 */
export function heatmapRequested(req: Request, query: Record<string, string>): HeatmapOptions | undefined {
  const { format, overlay } = query;
  if (format !== undefined && format !== 'png' && format !== 'json') {
    throw new BadRequestError(`format must be json or png, got ${JSON.stringify(format)}`);
  }
  if (overlay !== undefined && overlay !== 'true' && overlay !== 'false') {
    throw new BadRequestError(`overlay must be true or false, got ${JSON.stringify(overlay)}`);
  }
  const png = format !== undefined ? format === 'png' : req.get('accept') !== undefined && req.accepts(['application/json', 'image/png']) === 'image/png';
  return png ? { overlay: overlay !== 'false' } : undefined;
}

/**
 * Sends rendered heatmaps: one input → the PNG itself (`image/png`); several → JSON, a list of `data:image/png;base64,`
 * URLs in input order, wrapped by `envelope` (KServe v1: `{"explanations": [...]}`).
 */
export async function sendHeatmaps(res: Response, pngs: Buffer[], envelope: (urls: string[]) => unknown = (urls) => urls): Promise<void> {
  if (pngs.length === 1) {
    if (res.headersSent || res.destroyed) return;
    res.status(200).type('image/png').send(pngs[0]);
    return;
  }
  await sendResult(res, envelope(pngs.map(pngDataUrl)));
}
