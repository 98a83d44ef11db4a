/**
 * `vmm help PLUGIN`: a plugin's options as its schema declares them (plugin.schema; see
 * options.ts), one entry per option: name, what kind of value, required or its default, and the
 * schema's description.
 */
import type { JsonSchema } from '../../plugin-api';
import type { LoadedPlugin } from './loader';

const INDENT = '  ';

/** The help text for one loaded plugin (ends with a newline). */
export function formatPluginHelp(loaded: Pick<LoadedPlugin, 'plugin' | 'source'>): string {
  const { plugin, source } = loaded;
  const head = `plugin '${plugin.name}' (${source})`;
  const schema = plugin.schema;
  if (!schema) return `${head} declares no options schema: it takes the options its documentation describes.\n`;
  const properties = Object.entries(schema.properties ?? {});
  const required = new Set(schema.required ?? []);
  const lines = [`${head}${schema.description ? `: ${schema.description}` : ''}`, ''];
  if (properties.length === 0) lines.push(`${INDENT}(no options)`);
  else lines.push('options:');
  const width = Math.max(0, ...properties.map(([name]) => name.length));
  for (const [name, option] of properties) {
    const facts = [kindOf(option)];
    if (required.has(name)) facts.push('required');
    if (option.default !== undefined) facts.push(`default ${JSON.stringify(option.default)}`);
    lines.push(`${INDENT}${name.padEnd(width)}  ${facts.join(', ')}`);
    if (option.description) lines.push(`${INDENT}${' '.repeat(width)}  ${option.description}`);
  }
  if (schema.additionalProperties !== false && properties.length > 0) lines.push('', `${INDENT}(other options are allowed too)`);
  return `${lines.join('\n')}\n`;
}

/** "integer 0 to 65535", "string (a path)", "one of "a", "b"", "object of string (a path)". */
function kindOf(schema: JsonSchema): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return `one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return alternatives.map(kindOf).join(' or ');
  const types = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type as string];
  const words = types.map((type) => {
    switch (type) {
      case 'integer':
      case 'number': {
        const low = schema.minimum ?? schema.exclusiveMinimum;
        const high = schema.maximum ?? schema.exclusiveMaximum;
        return low !== undefined && high !== undefined ? `${type} ${low} to ${high}`
          : low !== undefined ? `${type} ≥ ${low}` : high !== undefined ? `${type} ≤ ${high}` : type;
      }
      case 'string': return schema.resolvePath ? 'string (a path)' : 'string';
      case 'array': return schema.items ? `list of ${kindOf(schema.items)}` : 'list';
      case 'object': return typeof schema.additionalProperties === 'object' ? `object of ${kindOf(schema.additionalProperties)}` : 'object';
      default: return type;
    }
  });
  return words.length ? words.join(' or ') : 'any value';
}
