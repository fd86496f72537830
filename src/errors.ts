// Errors every layer throws; the http layer's one error middleware maps them to
// `{code, type, message}` JSON with `status`. Types are TorchServe's names.

export class TorchdError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = type;
  }

  toJSON(): { code: number; type: string; message: string } {
    return { code: this.status, type: this.type, message: this.message };
  }
}

export class BadRequestError extends TorchdError {
  constructor(message: string) {
    super(400, 'BadRequestException', message);
  }
}

export class InvalidKeyError extends TorchdError {
  constructor(message = 'Token Authorization failed: missing or invalid key') {
    super(401, 'InvalidKeyException', message);
  }
}

export class ForbiddenError extends TorchdError {
  constructor(message: string) {
    super(403, 'InvalidModelException', message);
  }
}

export class ResourceNotFoundError extends TorchdError {
  constructor(message = 'Requested resource is not found, please refer to API document.') {
    super(404, 'ResourceNotFoundException', message);
  }
}

export class ModelNotFoundError extends TorchdError {
  constructor(model: string) {
    super(404, 'ModelNotFoundException', `Model not found: ${model}`);
  }
}

export class ModelVersionNotFoundError extends TorchdError {
  constructor(model: string, version: string) {
    super(404, 'ModelVersionNotFoundException', `Model version: ${version} does not exist for model: ${model}`);
  }
}

export class MethodNotAllowedError extends TorchdError {
  constructor(message = 'Requested method is not allowed, please refer to API document.') {
    super(405, 'MethodNotAllowedException', message);
  }
}

export class ConflictError extends TorchdError {
  constructor(message: string) {
    super(409, 'ConflictStatusException', message);
  }
}

export class PayloadTooLargeError extends TorchdError {
  constructor(limit: number) {
    super(413, 'PayloadTooLargeException', `Request body exceeds max_request_size (${limit} bytes)`);
  }
}

export class ServiceUnavailableError extends TorchdError {
  constructor(message: string, retryAfterSeconds = 1) {
    super(503, 'ServiceUnavailableException', message, { 'Retry-After': String(retryAfterSeconds) });
  }
}

/** The model raised during forward (TorchServe: 503 "Prediction failed"). */
export class PredictionFailedError extends TorchdError {
  constructor(reason: string) {
    super(503, 'InternalServerException', `Prediction failed: ${reason}`);
  }
}

export class OutOfResourcesError extends TorchdError {
  constructor() {
    super(507, 'InternalServerException', 'Out of resources');
  }
}

export class RequestTimeoutError extends TorchdError {
  constructor(ms: number) {
    super(504, 'RequestTimeoutException', `Request timed out after ${ms} ms`);
  }
}

export class InternalServerError extends TorchdError {
  constructor(message: string) {
    super(500, 'InternalServerException', message);
  }
}
