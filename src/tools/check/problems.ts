/**
 * The problems a check finds, collected in the order they are found. A fatal problem means
 * the metadata is wrong in a way that loses or corrupts data; a non-fatal one wastes space
 * (a leaked block) or is advisory (a stale counter), and the kernel can live with it.
 */

export type Severity = 'fatal' | 'non-fatal';

export type Area = 'superblock' | 'details' | 'mappings' | 'metadata space map' | 'data space map';

export interface Problem {
  severity: Severity;
  area: Area;
  /** The metadata block where the problem was found, when there is one. */
  block?: number;
  /** What is wrong, without the block number (the report adds it). */
  message: string;
}

/** An append-only list of problems; `fatal` and `nonFatal` add one each. */
export class ProblemLog {
  readonly problems: Problem[] = [];

  fatal(area: Area, message: string, block?: number): void {
    this.add('fatal', area, message, block);
  }

  nonFatal(area: Area, message: string, block?: number): void {
    this.add('non-fatal', area, message, block);
  }

  get fatalCount(): number {
    return this.problems.filter((p) => p.severity === 'fatal').length;
  }

  private add(severity: Severity, area: Area, message: string, block: number | undefined): void {
    this.problems.push(
      block === undefined ? { severity, area, message } : { severity, area, block, message },
    );
  }
}
