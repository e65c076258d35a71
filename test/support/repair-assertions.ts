/**
 * The assertions every repair test makes: the real thin_check accepts the repaired file,
 * its thin_dump keeps exactly what did not sit under a damaged block, and the report names
 * precisely what was lost.
 */

import assert from 'node:assert/strict';
import type { LostSpan, RepairReport } from '../../src/tools/index.js';
import { dumpMappings, expectedAfterDamage, type PathedDevice } from './metadata-paths.js';
import { thinCheck, thinDump } from './peers.js';

function inSpans(vblock: number, spans: readonly LostSpan[]): boolean {
  return spans.some((s) => vblock >= s.first && (s.last === null || vblock <= s.last));
}

/**
 * Checks `repaired` (written by a repair of `original` with `damaged` blocks damaged) and
 * its report. Returns the repaired mappings, for comparisons with other tools.
 */
export async function assertRepaired(
  original: PathedDevice[],
  damaged: ReadonlySet<number>,
  repaired: string,
  report: RepairReport,
  cut: ReadonlyMap<number, number> = new Map(),
): Promise<Map<number, Map<number, string>>> {
  const context = JSON.stringify(report);
  const check = await thinCheck(repaired);
  assert.equal(check.status, 0, `thin_check: ${check.stdout}${check.stderr}\n${context}`);
  const actual = dumpMappings(await thinDump(repaired));
  const expected = expectedAfterDamage(original, damaged, cut);
  // Mappings dropped for their value (beyond the data device) are reported without a block.
  for (const { device, ranges } of report.lost.mappings) {
    for (const span of ranges.filter((s) => s.block === null)) {
      for (const vblock of expected.get(device)?.keys() ?? []) {
        if (inSpans(vblock, [span])) expected.get(device)?.delete(vblock);
      }
    }
  }
  assert.deepEqual(actual, expected, context);
  assertReportSaysWhatWasLost(original, actual, report);
  return actual;
}

function assertReportSaysWhatWasLost(
  original: PathedDevice[],
  actual: Map<number, Map<number, string>>,
  report: RepairReport,
): void {
  const context = JSON.stringify(report);
  let keptMappings = 0;
  for (const device of original) {
    const kept = actual.get(device.id);
    if (kept === undefined) {
      const named =
        report.lost.devices.some((d) => d.id === device.id) ||
        inSpans(device.id, report.lost.deviceRanges);
      assert.ok(named, `device ${device.id} was lost without a word: ${context}`);
      continue;
    }
    keptMappings += kept.size;
    const spans = report.lost.mappings.find((m) => m.device === device.id)?.ranges ?? [];
    for (const m of device.mappings) {
      const lost: boolean = !kept.has(m.vblock);
      assert.equal(
        inSpans(m.vblock, spans),
        lost,
        `device ${device.id} vblock ${m.vblock}: ${lost ? 'lost but not reported' : 'kept but reported lost'}: ${context}`,
      );
    }
  }
  assert.equal(report.kept.devices, actual.size, context);
  assert.equal(report.kept.mappings, keptMappings, context);
}
