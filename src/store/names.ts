// Model names and versions become URL segments and file names: the one rule for both, used by the model store,
// the management API and the archiver alike (an archive that loads can always be managed).
import { BadRequestError } from '../errors.js';

/** TorchServe's model-name rule; it also keeps names usable as path segments and file names. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Whether `value` is a valid model name or version (see checkName). */
export function isValidName(value: string): boolean {
  return NAME.test(value) && !value.includes('..') && value.length <= 255;
}

/**
 * Returns `value`, or throws 400 BadRequestException for '/', '..', a leading dot, dash or underscore, other
 * characters, or more than 255 characters. `context` (e.g. "for model m") is appended to the message.
 */
export function checkName(value: string, what: 'model name' | 'model version', context = ''): string {
  if (!isValidName(value)) {
    throw new BadRequestError(
      `Invalid ${what} "${value}"${context}: use letters, digits, '_', '-' and '.', starting with a letter or digit, without '/' or '..'`,
    );
  }
  return value;
}
