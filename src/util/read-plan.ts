/**
 * ReadPlan: where the bytes of one read are, as pieces of open files, for a reader that
 * copies them itself (the native reply sender reads them from its own threads). A device
 * fills it at once or declines; the owner reuses one plan for every read of a connection.
 *
 * A filled plan holds an entry of its device's in-flight set (`entry`, given back with
 * `leave(entry)` exactly once, when the pieces have been read or never will be): until then
 * no block the plan names is freed and handed out again, and no file it names is closed.
 */

export class ReadPlan {
  /** (fd, offset, length) per piece, in the order of the read; fd -1: that many zeros. */
  pieces: Float64Array;
  /** Pieces filled. */
  count = 0;
  entry = 0;
  leave: (entry: number) => void = noop;

  constructor(capacity = 64) {
    this.pieces = new Float64Array(3 * capacity);
  }

  /** Pieces that fit. */
  get capacity(): number {
    return this.pieces.length / 3;
  }

  /** Empties the plan, with room for at least `pieces` pieces. */
  reset(pieces: number): void {
    this.count = 0;
    this.leave = noop;
    if (pieces > this.capacity) this.pieces = new Float64Array(3 * pieces);
  }

  add(fd: number, offset: number, length: number): void {
    const at = 3 * this.count++;
    this.pieces[at] = fd;
    this.pieces[at + 1] = offset;
    this.pieces[at + 2] = length;
  }

  /** Records the in-flight entry the plan holds, and how to give it back. */
  hold(entry: number, leave: (entry: number) => void): void {
    this.entry = entry;
    this.leave = leave;
  }

  /**
   * Hands the in-flight entry over to the caller, who gives it back by calling the result
   * (once); the plan itself then holds none and can be reused at once.
   */
  handOver(): () => void {
    const leave = this.leave;
    const entry = this.entry;
    this.leave = noop;
    return () => leave(entry);
  }

  /** Gives the in-flight entry back (once; later calls do nothing). */
  release(): void {
    const leave = this.leave;
    this.leave = noop;
    leave(this.entry);
  }
}

function noop(): void {}
