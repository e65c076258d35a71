/**
 * PAX extended headers for the tars the archive layer writes: records
 * "<length> <key>=<value>\n" with byte-exact values (raw strings), and the ASCII stand-in
 * names that go into the ustar header when a PAX `path` or `linkpath` carries the real one.
 */

/** The ustar header's name field: 100 bytes. */
export const USTAR_NAME_MAX = 100;
/** The largest value of an 8-byte octal field (uid, gid): 7 digits. */
export const USTAR_ID_MAX = 0o7777777;
/** The largest value of the 12-byte octal mtime field: 11 digits. */
export const USTAR_TIME_MAX = 0o77777777777;

/** One record; `value` is raw (one char per byte). */
export function paxRecord(key: string, value: string): Buffer {
  const body = Buffer.concat([
    Buffer.from(` ${key}=`, 'latin1'),
    Buffer.from(value, 'latin1'),
    Buffer.from('\n'),
  ]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length)
    length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length), 'latin1'), body]);
}

/** The records of `fields`, in their order. */
export function paxBody(fields: ReadonlyArray<[string, string]>): Buffer {
  return Buffer.concat(fields.map(([key, value]) => paxRecord(key, value)));
}

/** Whether tar-stream can write raw `name` into a ustar header as is (ASCII, fits). */
export function fitsUstar(name: string, allowPrefix: boolean): boolean {
  if (!/^[\x20-\x7e]*$/.test(name)) return false;
  if (name.length <= USTAR_NAME_MAX) return true;
  if (!allowPrefix) return false;
  // tar-stream splits at a '/' into a 155-byte prefix and a 100-byte name.
  const cut = name.lastIndexOf('/', name.length - 2);
  for (let at = name.indexOf('/'); at >= 0 && at <= cut; at = name.indexOf('/', at + 1)) {
    if (at <= 155 && name.length - at - 1 <= USTAR_NAME_MAX) return true;
  }
  return false;
}

/** A printable ASCII stand-in for raw `name`, at most 100 bytes, keeping a trailing '/'. */
export function standInName(name: string): string {
  const slash = name.endsWith('/') ? '/' : '';
  const printable = name.replace(/[^\x20-\x7e]/g, '_');
  return printable.length <= USTAR_NAME_MAX
    ? printable
    : `${printable.slice(0, USTAR_NAME_MAX - 1)}${slash}`;
}
