/**
 * File names are bytes, not text: a layer may hold names that are not valid UTF-8, and they
 * must come out of a diff exactly as they went in. Inside the archive layer a name is a
 * "raw" string, one char code per byte (latin1), so that string operations on it are byte
 * operations; it becomes a Buffer for each system call and text (UTF-8) only at the public
 * API (the paths of `listChanges`).
 */

/** The raw form of `text` (e.g. a root directory given by the caller). */
export function rawOf(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** The text form of a raw name (invalid UTF-8 sequences become U+FFFD). */
export function textOf(raw: string): string {
  return Buffer.from(raw, 'latin1').toString('utf8');
}

/** The bytes of a raw name, for a system call. */
export function fsPath(raw: string): Buffer {
  return Buffer.from(raw, 'latin1');
}

/** Raw `dir/name`. */
export function joinRaw(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}
