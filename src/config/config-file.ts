/**
 * The configuration file: Docker's `daemon.json` shape, limited to what a storage driver
 * reads.
 *
 *     { "storage-driver": "devicemapper", "storage-opts": ["dm.basesize=20G", ...] }
 *
 * Every other property is rejected by name, so a typo cannot pass unnoticed.
 */

import { readFile } from 'node:fs/promises';
import {
  ConfigError,
  type JsonNode,
  type JsonPosition,
  JsonSyntaxError,
  jsonTypeName,
  parseJson,
} from '../util/index.js';

/** One `KEY=VALUE` storage option and where in the file it stands. */
export interface FileEntry {
  text: string;
  at: JsonPosition;
}

const DRIVER = 'devicemapper';
const PROPERTIES = ['storage-driver', 'storage-opts'];

/** Reads and checks the file at `file`; returns its storage options in order. */
export async function readConfigFile(file: string): Promise<FileEntry[]> {
  return parseConfigFile(await readText(file), file);
}

export function parseConfigFile(text: string, file: string): FileEntry[] {
  const root = parseOrExplain(text, file);
  if (root.type !== 'object') {
    throw fileError(file, root.at, `the file holds ${jsonTypeName(root)}, not an object`, {
      hint: `write {"storage-driver": "${DRIVER}", "storage-opts": ["dm.basesize=20G"]}`,
    });
  }
  let entries: FileEntry[] = [];
  for (const member of root.members) {
    if (member.key === 'storage-driver') {
      checkDriver(member.value, file);
    } else if (member.key === 'storage-opts') {
      entries = storageOpts(member.value, file);
    } else {
      throw fileError(file, member.keyAt, `unknown property "${member.key}"`, {
        hint: `a thinp configuration file holds only ${PROPERTIES.map((p) => `"${p}"`).join(' and ')}`,
      });
    }
  }
  return entries;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const problem =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EISDIR'
          ? 'is a directory'
          : code === 'EACCES'
            ? 'cannot be read (permission denied)'
            : `cannot be read (${code ?? String(cause)})`;
    throw new ConfigError(`configuration file ${file} ${problem}`, {
      hint: 'check the path given with --config',
      cause,
    });
  }
}

function parseOrExplain(text: string, file: string): JsonNode {
  try {
    return parseJson(text);
  } catch (cause) {
    if (cause instanceof JsonSyntaxError) {
      throw fileError(file, cause.at, `malformed JSON: ${cause.reason}`, {
        hint: 'correct the JSON at that place',
        cause,
      });
    }
    throw cause;
  }
}

function checkDriver(node: JsonNode, file: string): void {
  if (node.type !== 'string' || node.value !== DRIVER) {
    const found = node.type === 'string' ? `"${node.value}"` : jsonTypeName(node);
    throw fileError(
      file,
      node.at,
      `"storage-driver" is ${found}, but thinp is the ${DRIVER} driver`,
      {
        hint: `set it to "${DRIVER}" or leave it out`,
      },
    );
  }
}

function storageOpts(node: JsonNode, file: string): FileEntry[] {
  const shape = {
    hint: '"storage-opts" is a list of "KEY=VALUE" strings, such as ["dm.basesize=20G"]',
  };
  if (node.type !== 'array') {
    throw fileError(file, node.at, `"storage-opts" is ${jsonTypeName(node)}, not an array`, shape);
  }
  return node.items.map((item) => {
    if (item.type !== 'string') {
      throw fileError(
        file,
        item.at,
        `a storage option is ${jsonTypeName(item)}, not a string`,
        shape,
      );
    }
    return { text: item.value, at: item.at };
  });
}

export function fileSource(file: string, at: JsonPosition): string {
  return `${file}:${at.line}:${at.column}`;
}

function fileError(
  file: string,
  at: JsonPosition,
  message: string,
  details: { hint: string; cause?: unknown },
): ConfigError {
  return new ConfigError(message, { ...details, source: fileSource(file, at) });
}
