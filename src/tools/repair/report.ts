/**
 * The repair report: where the pool was read from, what was kept, and precisely what was
 * lost — devices, and per device the vblock ranges that sat in damaged nodes — each loss
 * with the damaged block and what is wrong with it. Ranges are inclusive: `last` null means
 * "to the end of the device" (a damaged rightmost node or a damaged root).
 */

export interface LostSpan {
  first: number;
  /** Inclusive; null when the range has no upper bound. */
  last: number | null;
  /** The damaged metadata block; null for a mapping dropped for its value. */
  block: number | null;
  problem: string;
}

export interface RepairReport {
  /** 'superblock': its roots were used; 'scan': the roots were found by scanning. */
  source: 'superblock' | 'scan';
  /** Problems of the superblock that made a scan necessary, or that were passed over. */
  superblockProblem: string | null;
  transactionId: number;
  time: number;
  dataBlockSize: number;
  nrDataBlocks: number;
  /** Superblock fields that were not read but given on the command line or inferred. */
  inferred: string[];
  roots: { mapping: number | null; details: number | null };
  /** Sound btree nodes a scan found (scan only). */
  scannedNodes: number | null;
  kept: { devices: number; mappings: number };
  lost: {
    /** Devices whose details survive but whose mapping tree entry sat in a damaged node. */
    devices: { id: number; block: number | null; problem: string }[];
    /** Ranges of device ids lost from the top-level tree where no device is known. */
    deviceRanges: LostSpan[];
    /** Kept devices whose details were lost (and were made up), and where they were. */
    details: { id: number; block: number | null; problem: string }[];
    /** Per kept device, the vblock ranges lost. */
    mappings: { device: number; ranges: LostSpan[] }[];
  };
  /** The held metadata snapshot's block, which a repair does not carry over; null if none. */
  droppedHeldRoot: number | null;
  /** Every damaged block met, with what is wrong with it. */
  damagedBlocks: { block: number; problem: string }[];
}

/** True when the repair lost nothing. */
export function nothingLost(report: RepairReport): boolean {
  const { lost } = report;
  return (
    lost.devices.length === 0 &&
    lost.deviceRanges.length === 0 &&
    lost.details.length === 0 &&
    lost.mappings.length === 0
  );
}

function span(s: LostSpan): string {
  return s.first === s.last ? `${s.first}` : `[${s.first}, ${s.last ?? '-'}]`;
}

/** The report as text, one line per fact. */
export function formatRepairReport(report: RepairReport, output: string): string {
  const lines: string[] = [];
  if (report.source === 'superblock') {
    lines.push('read from: the superblock');
  } else {
    lines.push(
      `read from: a scan for btree nodes (${report.scannedNodes ?? 0} sound nodes found), since the superblock is unusable`,
    );
  }
  if (report.superblockProblem !== null) lines.push(`superblock: ${report.superblockProblem}`);
  lines.push(
    `roots: top-level mapping tree ${report.roots.mapping ?? 'none'}, details tree ${report.roots.details ?? 'none'}`,
  );
  lines.push(
    `pool: transaction ${report.transactionId}, time ${report.time}, data block size ${report.dataBlockSize} sectors, ${report.nrDataBlocks} data blocks`,
  );
  if (report.inferred.length > 0)
    lines.push(`not read from the superblock: ${report.inferred.join('; ')}`);
  lines.push(`kept: ${report.kept.devices} devices, ${report.kept.mappings} mappings`);
  for (const d of report.lost.devices) {
    const where = d.block === null ? d.problem : `damaged block ${d.block}: ${d.problem}`;
    lines.push(`lost: device ${d.id} (its entry in the top-level mapping tree: ${where})`);
  }
  for (const r of report.lost.deviceRanges) {
    const where = r.block === null ? r.problem : `damaged block ${r.block}: ${r.problem}`;
    lines.push(`lost: any device with id in ${span(r)} (${where})`);
  }
  for (const d of report.lost.details) {
    const where = d.block === null ? d.problem : `damaged block ${d.block}: ${d.problem}`;
    lines.push(
      `lost: the details of device ${d.id} (${where}); kept with creation time 0, snapshot time ${report.time}`,
    );
  }
  for (const { device, ranges } of report.lost.mappings) {
    for (const r of ranges) {
      const where = r.block === null ? r.problem : `damaged block ${r.block}: ${r.problem}`;
      lines.push(`lost: device ${device}, vblocks ${span(r)} (${where})`);
    }
  }
  if (nothingLost(report)) lines.push('lost: nothing');
  if (report.droppedHeldRoot !== null) {
    lines.push(
      `dropped: the held metadata snapshot (block ${report.droppedHeldRoot}); reserve a new one if it is needed`,
    );
  }
  lines.push(`wrote: ${output}`);
  return `${lines.join('\n')}\n`;
}
