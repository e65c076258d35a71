/**
 * A peer broke the NBD protocol in a way that cannot be answered with an error reply (a bad
 * magic number, unknown client flags, an export name that does not exist for
 * NBD_OPT_EXPORT_NAME). The connection ends with a hard disconnect.
 */

import { BadInputError } from '../util/index.js';

export class ProtocolError extends BadInputError {
  override readonly code = 'PROTOCOL';
}
