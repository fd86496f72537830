// One JSON log line and one metrics sample per request, written when the response closes (also
// when the client went away first, so aborted requests are counted too).
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { ServerMetrics } from '../metrics/types.js';

export function requestLog(logger: Logger, metrics: ServerMetrics): RequestHandler {
  return (req, res, next) => {
    const start = performance.now();
    res.once('close', () => {
      const ms = Math.round((performance.now() - start) * 1000) / 1000;
      const { requestId, route, model, requestedModel, version, error } = res.locals as Record<string, unknown>;
      const status = res.statusCode;
      metrics.request(model as string | undefined, version as string | undefined, status, ms);
      const line = {
        id: requestId,
        method: req.method,
        url: req.originalUrl,
        route: route ?? null,
        model: model ?? requestedModel ?? null,
        version: version ?? null,
        status,
        ms,
        ...(res.writableFinished ? {} : { aborted: true }),
      };
      if (status >= 500) logger.error({ ...line, err: error }, 'request failed');
      else logger.info(line, 'request');
    });
    next();
  };
}
