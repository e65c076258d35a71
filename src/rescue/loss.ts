/**
 * What a repair of a legacy root's metadata lost, in the root's own names: for each lost
 * device or range of blocks, the driver device (hash) and the images and containers whose
 * filesystems sit on it. One line per loss, for stderr.
 */

import type { RescueSession } from './session.js';

export function describeLoss(session: RescueSession): string[] {
  const report = session.pool.repair;
  if (report === undefined) return [];
  const names = deviceNames(session);
  const name = (id: number) => names.get(id) ?? `thin device ${id} (no driver record)`;
  const lines = [
    `the pool metadata of ${session.catalog.paths.root} is damaged (${session.pool.problems.length} problems, first: ${session.pool.problems[0] ?? 'unknown'}); rescuing from a repaired copy, the source untouched`,
  ];
  for (const d of report.lost.devices) {
    lines.push(`lost: all of ${name(d.id)} (metadata block ${d.block ?? '?'}: ${d.problem})`);
  }
  for (const m of report.lost.mappings) {
    const ranges = m.ranges.map((r) => `${r.first}-${r.last ?? 'end'}`).join(', ');
    const bytes = session.pool.blockSize;
    lines.push(`lost: blocks ${ranges} (of ${bytes} bytes) of ${name(m.device)}`);
  }
  for (const r of report.lost.deviceRanges) {
    lines.push(`lost: thin device ids ${r.first}-${r.last ?? 'end'} (${r.problem})`);
  }
  if (lines.length === 1) lines.push('nothing was lost');
  return lines;
}

/** Thin device id → "device <hash> (image …, container …)". */
function deviceNames(session: RescueSession): Map<number, string> {
  const { catalog } = session;
  const users = new Map<string, string[]>();
  const add = (hash: string, who: string) => users.set(hash, [...(users.get(hash) ?? []), who]);
  for (const layer of catalog.layers.values()) {
    const images = catalog.images.filter((i) => i.chain.includes(layer.chainId));
    const named = images.map((i) => (i.tags.length > 0 ? i.tags.join(' ') : i.id.slice(7, 19)));
    add(layer.cacheId, `layer of image ${named.join(', ') || 'none'}`);
  }
  for (const c of catalog.containers)
    if (c.mount !== undefined) add(c.mount.mountId, `container ${c.name}`);
  const out = new Map<number, string>();
  for (const [hash, record] of catalog.devices) {
    const who = users.get(hash);
    const label = hash === '' ? 'base' : hash;
    out.set(record.deviceId, `device ${label}${who === undefined ? '' : ` (${who.join(', ')})`}`);
  }
  return out;
}
