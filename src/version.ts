// torchd's version: the one place it is read from package.json (src/ and dist/ both sit one level below it).
import { readFileSync } from 'node:fs';

/** The `version` of torchd's package.json, shown by `--version`, the OpenAPI documents and KServe v2 `GET /v2`. */
export const serverVersion: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
