/**
 * tools: offline metadata tools compatible with thin-provisioning-tools: check, dump and
 * restore (thin_dump XML), repair, ls. Imports thin, pdata, block and util.
 */

export type { BlockDevice } from '../block/index.js';
export * from './check/index.js';
export { type DumpOptions, dumpMetadata } from './dump.js';
export { createMetadataFile, openMetadataFile } from './metadata-file.js';
export {
  formatRepairReport,
  type LostSpan,
  nothingLost,
  type RepairOptions,
  type RepairReport,
  repairMetadata,
} from './repair/index.js';
export { type RestoreSummary, restoreEvents, restoreMetadata } from './restore.js';
export { DumpXmlError, parseDumpXml, readDumpXml } from './xml/dump-reader.js';
export { type DumpSink, DumpWriter, formatDumpXml } from './xml/dump-writer.js';
export type {
  DeviceInfo,
  MappingRun,
  MetadataImage,
  SuperblockInfo,
  XmlEvent,
} from './xml/metadata-image.js';
