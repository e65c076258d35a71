/** thinp's version, read once from package.json (two folders up from src/util and dist/util). */

import { createRequire } from 'node:module';

const manifest = createRequire(import.meta.url)('../../package.json') as { version: string };

export const THINP_VERSION: string = manifest.version;
