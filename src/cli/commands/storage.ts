import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { addContainerCommands, addImageCommands } from './images.js';
import { addLayerCommands } from './layer.js';

/** The storage driver: layers, images and containers, as Docker's devicemapper driver. */
export function addStorageCommands(program: Command, io: CliIo): void {
  addLayerCommands(program, io);
  addImageCommands(program, io);
  addContainerCommands(program, io);
}
