// Maps errors of the native addon (which carry a stable `code`, see NativeErrorCode) to the
// TorchServe-typed errors the http layer turns into statuses. No message parsing.
import {
  BadRequestError,
  InternalServerError,
  OutOfResourcesError,
  PredictionFailedError,
  ServiceUnavailableError,
  TorchdError,
} from '../errors.js';
import type { NativeErrorCode } from '../native.js';

export function nativeCode(err: unknown): NativeErrorCode | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('E_') ? (code as NativeErrorCode) : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** E_OOM → 507, E_FORWARD → 503 Prediction failed, E_SHAPE/E_DTYPE/E_ARGUMENT → 400, E_DISPOSED → 503. */
export function mapNativeError(err: unknown): TorchdError {
  if (err instanceof TorchdError) return err;
  switch (nativeCode(err)) {
    case 'E_OOM':
      return new OutOfResourcesError();
    case 'E_FORWARD':
      return new PredictionFailedError(messageOf(err));
    case 'E_SHAPE':
    case 'E_DTYPE':
    case 'E_ARGUMENT':
      return new BadRequestError(messageOf(err));
    case 'E_DISPOSED':
      return new ServiceUnavailableError('Model is unloading; retry later');
    case 'E_CANCELLED':
      // Stopped at a safe point because nobody waits for it any more (client gone, shutdown).
      return new ServiceUnavailableError(`The request was cancelled: ${messageOf(err)}`);
    default:
      return new InternalServerError(messageOf(err));
  }
}
