// Model names and versions become URL segments and file names, so they are checked before any use.
import { BadRequestError } from '../../errors.js';

/** TorchServe's model-name rule; it also keeps names usable as path segments and file names. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Returns `value`, or throws 400 BadRequestException for '/', '..', a leading dot, or other characters. */
export function checkName(value: string, what: 'model name' | 'model version'): string {
  if (!NAME.test(value) || value.includes('..') || value.length > 255) {
    throw new BadRequestError(
      `Invalid ${what} "${value}": use letters, digits, '_', '-' and '.', starting with a letter or digit, without '/' or '..'`,
    );
  }
  return value;
}
