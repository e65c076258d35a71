/**
 * The kinds of value a storage option takes, each a parser with its rules and a formatter
 * that prints the value back in a form the parser accepts. Parsers throw BadInputError
 * about the value alone; the loader adds which option and which source it came from.
 */

import {
  BadInputError,
  type Bytes,
  formatSize,
  type PercentRule,
  parsePercent,
  parseSize,
} from '../util/index.js';

export interface OptionSpec<T> {
  /** The option's name as users write it, e.g. `dm.basesize`. */
  readonly key: string;
  /** One line on what it does, for help and docs. */
  readonly summary: string;
  parse(text: string): T;
  format(value: T): string;
  /**
   * Combines the option given twice in one source (`dm.mkfsarg` appends, `dm.mountopt`
   * joins with commas). Without it, the later value wins.
   */
  combine?(earlier: T, later: T): T;
}

export interface SizeRule {
  min: Bytes;
  max?: Bytes;
  multipleOf: Bytes;
}

export function sizeOption(key: string, summary: string, rule: SizeRule): OptionSpec<Bytes> {
  const range = `give a multiple of ${formatSize(rule.multipleOf)} from ${formatSize(rule.min)}${
    rule.max === undefined ? '' : ` to ${formatSize(rule.max)}`
  }`;
  return {
    key,
    summary,
    parse(text) {
      const size = parseSize(text);
      if (size < rule.min || (rule.max !== undefined && size > rule.max)) {
        throw new BadInputError(`size ${text} is out of range`, { hint: range });
      }
      if (size % rule.multipleOf !== 0) {
        throw new BadInputError(
          `size ${text} is not a multiple of ${formatSize(rule.multipleOf)}`,
          {
            hint: range,
          },
        );
      }
      return size;
    },
    format: formatSize,
  };
}

export function percentOption(key: string, summary: string, rule: PercentRule): OptionSpec<number> {
  return {
    key,
    summary,
    parse: (text) => parsePercent(text, rule),
    format: (value) => `${value}%`,
  };
}

const TRUE_WORDS = ['1', 't', 'T', 'true', 'TRUE', 'True'];
const FALSE_WORDS = ['0', 'f', 'F', 'false', 'FALSE', 'False'];

/** Booleans as Go's `strconv.ParseBool` reads them, so Docker's files carry over. */
export function booleanOption(key: string, summary: string): OptionSpec<boolean> {
  return {
    key,
    summary,
    parse(text) {
      if (TRUE_WORDS.includes(text)) return true;
      if (FALSE_WORDS.includes(text)) return false;
      throw new BadInputError(`'${text}' is not a boolean`, { hint: 'give true or false' });
    },
    format: String,
  };
}

export function choiceOption<T extends string>(
  key: string,
  summary: string,
  choices: readonly T[],
): OptionSpec<T> {
  return {
    key,
    summary,
    parse(text) {
      const choice = choices.find((c) => c === text);
      if (choice === undefined) {
        throw new BadInputError(`'${text}' is not one of the choices`, {
          hint: `give ${choices.join(' or ')}`,
        });
      }
      return choice;
    },
    format: String,
  };
}

export interface IntegerRule {
  min: number;
  max: number;
}

export function integerOption(key: string, summary: string, rule: IntegerRule): OptionSpec<number> {
  const range = `give a whole number from ${rule.min} to ${rule.max}`;
  return {
    key,
    summary,
    parse(text) {
      if (!/^[+-]?\d+$/.test(text)) {
        throw new BadInputError(`'${text}' is not a whole number`, { hint: range });
      }
      const value = Number(text);
      if (value < rule.min || value > rule.max) {
        throw new BadInputError(`${text} is out of range`, { hint: range });
      }
      return value;
    },
    format: String,
  };
}

/** An absolute path, such as a block device: `/dev/sdb1`. */
export function pathOption(key: string, summary: string): OptionSpec<string> {
  return {
    key,
    summary,
    parse(text) {
      if (!text.startsWith('/')) {
        throw new BadInputError(`'${text}' is not an absolute path`, {
          hint: 'give the full path of the device, such as /dev/sdb1',
        });
      }
      return text;
    },
    format: String,
  };
}

/** A name without white space, such as an existing pool's name. */
export function nameOption(key: string, summary: string): OptionSpec<string> {
  return {
    key,
    summary,
    parse(text) {
      if (text === '' || /\s/.test(text)) {
        throw new BadInputError(`'${text}' is not a name`, {
          hint: 'give a name without spaces, such as thinpool',
        });
      }
      return text;
    },
    format: String,
  };
}

/** Free text; given again, it appends (`dm.mkfsarg`). */
export function listOption(key: string, summary: string): OptionSpec<readonly string[]> {
  return {
    key,
    summary,
    parse: (text) => [requireText(text)],
    format: (value) => value.join(' '),
    combine: (earlier, later) => [...earlier, ...later],
  };
}

/** Comma-separated text; given again, the parts join with commas (`dm.mountopt`). */
export function joinedOption(key: string, summary: string): OptionSpec<string> {
  return {
    key,
    summary,
    parse: requireText,
    format: String,
    combine: (earlier, later) => `${earlier},${later}`,
  };
}

function requireText(text: string): string {
  if (text === '') {
    throw new BadInputError('the value is empty', { hint: 'give a value after the =' });
  }
  return text;
}
