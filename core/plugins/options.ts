/**
 * Plugin options checked against the plugin's JSON Schema (`plugin.schema`), with ajv 8
 * (draft-07), the way webpack plugins use schema-utils. One function, `checkOptions`, serves the
 * loader (so a config file and `--plugin` are checked by the same code, before anything starts),
 * the Vm (for plugins handed to it directly) and the first-party plugins' own `parseOptions`.
 *
 * What a checked value gets:
 *   - a copy: the user's objects are never changed;
 *   - `default`s filled in for absent properties;
 *   - strings whose schema says `resolvePath: true` resolved against `baseDir` (the config file's
 *     directory for options given there, the working directory for `--plugin`), as the core
 *     resolves `kernel`.
 *
 * Messages are uniform sentences about the first problem found: "option 'port' must be a whole
 * number from 0 to 65535; got 70000", "unknown option 'prot'; the options are port, source".
 * A property schema's `description` is used as what the value must be ("option 'mac' must be
 * <description>; got …"), so authors word their own constraints once, for errors and for
 * `vmm help PLUGIN`.
 */
import * as path from 'path';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import type { JsonSchema, OptionsSchema } from '../../plugin-api';
import { describe, isPlainObject } from '../config';

/** The one keyword vmm adds to JSON Schema: resolve this string as a path. */
export const RESOLVE_PATH_KEYWORD = 'resolvePath';

interface CheckContext {
  baseDir: string;
}

const ajv = new Ajv({
  allErrors: false,
  useDefaults: true,
  verbose: true,
  passContext: true,
  // Unknown keywords (a typo such as "descripton") are schema errors; type-strictness warnings
  // would only print to the user's terminal.
  strictSchema: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
});

ajv.addKeyword({
  keyword: RESOLVE_PATH_KEYWORD,
  type: 'string',
  schemaType: 'boolean',
  modifying: true,
  errors: false,
  validate(this: CheckContext, enabled: boolean, data: string, _schema: unknown, where?: { parentData: unknown; parentDataProperty: string | number }): boolean {
    if (enabled && where && typeof where.parentData === 'object' && where.parentData !== null) {
      (where.parentData as Record<string | number, unknown>)[where.parentDataProperty] = path.resolve(this.baseDir, data);
    }
    return true;
  },
});

const compiled = new WeakMap<object, ValidateFunction>();

/** Thrown for options that do not fit the schema; the message is the sentence for the user. */
export class OptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

/** Thrown for a schema that is not one (the plugin's fault, not the user's). */
export class SchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaError';
  }
}

/** Compile (once per schema object) and return the validator; throws SchemaError. */
function validatorFor(schema: OptionsSchema): ValidateFunction {
  const cached = compiled.get(schema);
  if (cached) return cached;
  if (!isPlainObject(schema) || schema.type !== 'object') {
    throw new SchemaError(`its options schema must be a JSON Schema object with "type": "object"; got ${describe(schema)}`);
  }
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema);
  } catch (error) {
    throw new SchemaError(`its options schema is not valid: ${(error as Error).message}`);
  }
  compiled.set(schema, validate);
  return validate;
}

/**
 * Check `input` against `schema` and return the checked copy (defaults filled in, paths
 * resolved against `baseDir`). Throws OptionsError naming the option, or SchemaError.
 * Checking a value this returned again gives an equal value.
 */
export function checkOptions<T = Record<string, unknown>>(schema: OptionsSchema, input: unknown, baseDir: string = process.cwd()): T {
  const validate = validatorFor(schema);
  const data = copyData(input === undefined ? {} : input);
  const context: CheckContext = { baseDir };
  if (!validate.call(context, data)) throw new OptionsError(formatErrors(validate.errors ?? [], schema));
  return data as T;
}

/** A deep copy of plain objects and arrays; everything else (numbers, strings, …) as it is. */
function copyData(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copyData);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) out[key] = copyData(v);
    return out;
  }
  return value;
}

// --- messages ----------------------------------------------------------------------------------

/** The error to report: the outermost anyOf/oneOf when one failed (its branches explain less), else the first. */
function formatErrors(errors: readonly ErrorObject[], root: OptionsSchema): string {
  const error = errors.find((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf') ?? errors[0];
  return error ? formatError(error, root) : 'the options are not valid';
}

/** JSON pointer "/sockets/x" → ['sockets', 'x']. */
function segmentsOf(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** "the options", "option 'port'", "option 'sockets' (entry 'x')", "option 'disks' (item 2)". */
function subjectOf(segments: readonly string[], schemaAt: (segments: readonly string[]) => JsonSchema | undefined): string {
  if (segments.length === 0) return 'the options';
  const inner = segments.slice(1).map((s, i) => {
    const parent = schemaAt(segments.slice(0, i + 1));
    return parent?.type === 'array' ? `item ${s}` : `entry '${s}'`;
  });
  return `option '${segments[0]}'${inner.length ? ` (${inner.join(', ')})` : ''}`;
}

/** The schema that applies at a data path (properties, additionalProperties, items), if simple. */
function schemaAtPath(root: JsonSchema, segments: readonly string[]): JsonSchema | undefined {
  let node: JsonSchema | undefined = root;
  for (const s of segments) {
    if (!node) return undefined;
    if (node.properties && Object.prototype.hasOwnProperty.call(node.properties, s)) node = node.properties[s];
    else if (node.items && !Array.isArray(node.items)) node = node.items as JsonSchema;
    else if (isPlainObject(node.additionalProperties)) node = node.additionalProperties as JsonSchema;
    else return undefined;
  }
  return node;
}

const TYPE_WORDS: Readonly<Record<string, string>> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  null: 'null',
};

function quoteList(names: readonly string[]): string {
  return names.map((n) => `'${n}'`).join(' and ');
}

function formatError(e: ErrorObject, root: OptionsSchema): string {
  const segments = segmentsOf(e.instancePath);
  const at = (segs: readonly string[]) => schemaAtPath(root, segs);
  const subject = subjectOf(segments, at);
  const node = (e.parentSchema ?? {}) as JsonSchema;
  const got = `; got ${describe(e.data)}`;
  const params = e.params as Record<string, unknown>;
  const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;

  if (propertyName !== undefined) {
    // The error of a `propertyNames` keyword: `node` is the propertyNames schema itself.
    return `${subject}: the name '${propertyName}' must be ${node.description ?? ruleOf(e, node)}`;
  }
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = String(params.additionalProperty);
      const known = Object.keys(node.properties ?? {});
      if (segments.length === 0) {
        return known.length ? `unknown option '${extra}'; the options are ${known.join(', ')}` : `unknown option '${extra}'; this plugin takes no options`;
      }
      return `${subject} has an unknown key '${extra}'${known.length ? `; the keys are ${known.join(', ')}` : ''}`;
    }
    case 'required': {
      const missing = String(params.missingProperty);
      const description = node.properties?.[missing]?.description;
      return `${subjectOf([...segments, missing], at)} is required${description ? `: ${description}` : ''}`;
    }
    case 'not': {
      const excluded = (e.schema as JsonSchema | undefined)?.required;
      if (excluded && excluded.length > 1) {
        const prefix = segments.length ? `${subject}: ` : '';
        return `${prefix}${segments.length ? 'keys' : 'options'} ${quoteList(excluded)} exclude each other`;
      }
      break;
    }
    default:
  }
  if (node.description) return `${subject} must be ${node.description}${got}`;
  return `${subject} must be ${ruleOf(e, node)}${got}`;
}

/** What a keyword asks for, as the end of "must be …". */
function ruleOf(e: ErrorObject, node: JsonSchema): string {
  const params = e.params as Record<string, unknown>;
  const kind = node.type === 'integer' ? 'a whole number' : 'a number';
  switch (e.keyword) {
    case 'type': {
      const types = Array.isArray(params.type) ? params.type as string[] : String(params.type).split(',');
      return types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
    }
    case 'minimum':
    case 'maximum':
      if (typeof node.minimum === 'number' && typeof node.maximum === 'number') return `${kind} from ${node.minimum} to ${node.maximum}`;
      return e.keyword === 'minimum' ? `at least ${params.limit}` : `at most ${params.limit}`;
    case 'exclusiveMinimum': return `greater than ${params.limit}`;
    case 'exclusiveMaximum': return `less than ${params.limit}`;
    case 'multipleOf': return `a multiple of ${params.multipleOf}`;
    case 'minLength': return params.limit === 1 ? 'a non-empty string' : `at least ${params.limit} characters long`;
    case 'maxLength': return `at most ${params.limit} characters long`;
    case 'pattern': return `a string matching /${params.pattern}/`;
    case 'enum': return `one of ${((params.allowedValues as unknown[]) ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const': return JSON.stringify(params.allowedValue);
    case 'minItems': return `a list of at least ${params.limit} items`;
    case 'maxItems': return `a list of at most ${params.limit} items`;
    case 'uniqueItems': return `a list without repeats (items ${Math.min(Number(params.i), Number(params.j))} and ${Math.max(Number(params.i), Number(params.j))} are equal)`;
    case 'minProperties': return `an object with at least ${params.limit} entries`;
    case 'maxProperties': return `an object with at most ${params.limit} entries`;
    case 'anyOf':
    case 'oneOf': return 'one of the forms the schema allows';
    default: return `valid (${e.message ?? e.keyword})`;
  }
}
