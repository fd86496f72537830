// torchd's errors on gRPC: the HTTP status of a TorchdError picks the gRPC code (TorchServe's GRPCUtils
// table), and the status message is the same `{code, type, message}` JSON a REST client would read.
import { Metadata, status as Code, type StatusObject } from '@grpc/grpc-js';
import { TorchdError } from '../errors.js';
import { toTorchdError } from '../http/errors.js';

/** HTTP status → gRPC status code (TorchServe's GRPCUtils mapping). */
export function grpcCode(httpStatus: number): Code {
  if (httpStatus >= 200 && httpStatus < 300) return Code.OK;
  switch (httpStatus) {
    case 400:
      return Code.INVALID_ARGUMENT;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.NOT_FOUND;
    case 409:
      return Code.ABORTED;
    case 413:
    case 429:
      return Code.RESOURCE_EXHAUSTED;
    case 416:
      return Code.OUT_OF_RANGE;
    case 499:
      return Code.CANCELLED;
    case 501:
      return Code.UNIMPLEMENTED;
    case 503:
      return Code.UNAVAILABLE;
    case 504:
      return Code.DEADLINE_EXCEEDED;
  }
  return httpStatus >= 400 && httpStatus < 500 ? Code.FAILED_PRECONDITION : Code.INTERNAL;
}

/** Any thrown value as a TorchdError (unknown failures become 500 InternalServerException). */
export function asTorchdError(err: unknown, maxRequestSize: number): TorchdError {
  return err instanceof TorchdError ? err : toTorchdError(err, maxRequestSize);
}

/**
 * The gRPC status for an error: code from its HTTP status, details = its JSON text, and its HTTP
 * headers (Retry-After) as trailing metadata in lower case.
 */
export function errorStatus(err: TorchdError): Partial<StatusObject> & { code: Code; details: string } {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(err.headers)) metadata.set(k.toLowerCase(), v);
  return { code: grpcCode(err.status), details: JSON.stringify(err.toJSON()), metadata };
}
