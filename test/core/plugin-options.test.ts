/**
 * core/plugins/options.ts: a plugin's options checked against its JSON Schema, the sentences a
 * user sees for each kind of mistake, defaults, `resolvePath`, and the types `FromSchema` gives.
 */
import type { FromSchema, OptionsSchema, Plugin, PluginOptions, UncheckedOptions } from '../../plugin-api';
import { definePlugin } from '../../core/index';
import { checkOptions, OptionsError, SchemaError } from '../../core/plugins/options';

const schema = {
  type: 'object',
  properties: {
    socket: { type: 'string', minLength: 1, resolvePath: true, description: 'the path of the control socket' },
    port: { type: 'integer', minimum: 0, maximum: 65535, default: 2016 },
    ratio: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
    name: { type: 'string', maxLength: 4 },
    id: { type: 'string', pattern: '^[a-z]+$' },
    mode: { enum: ['fast', 'safe'] },
    version: { const: 1 },
    tags: { type: 'array', items: { type: 'string', minLength: 2 }, maxItems: 2, uniqueItems: true },
    files: { type: 'array', items: { type: 'string', resolvePath: true } },
    limits: {
      type: 'object',
      properties: { soft: { type: 'integer', minimum: 1 }, hard: { type: 'integer' } },
      required: ['hard'],
      additionalProperties: false,
    },
    env: { type: 'object', additionalProperties: { type: 'string' }, propertyNames: { pattern: '^[A-Z_]+$', description: 'an upper-case variable name' } },
    size: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', pattern: '^[0-9]+[KMG]$' }] },
    maybe: { type: ['string', 'null'] },
    flag: { type: 'boolean' },
  },
  required: ['socket'],
  additionalProperties: false,
} as const satisfies OptionsSchema;

const check = (input: unknown, baseDir = '/base') => checkOptions(schema, input, baseDir);

describe('checked values', () => {
  test('defaults are filled in, paths resolved against baseDir (at any depth), the input is not changed', () => {
    const input = { socket: 'run/vm.sock', files: ['a', '/abs/b'], limits: { hard: 3 } };
    expect(check(input)).toEqual({ socket: '/base/run/vm.sock', port: 2016, files: ['/base/a', '/abs/b'], limits: { hard: 3 } });
    expect(input).toEqual({ socket: 'run/vm.sock', files: ['a', '/abs/b'], limits: { hard: 3 } });
  });

  test('checking a checked value again gives the same value (the loader and the Vm both check)', () => {
    const once = check({ socket: 'x', files: ['y'] });
    expect(check(once, '/elsewhere')).toEqual(once);
  });

  test('absent options count as {}', () => {
    expect(() => checkOptions(schema, undefined)).toThrow("option 'socket' is required: the path of the control socket");
    expect(checkOptions({ type: 'object' }, undefined)).toEqual({});
  });
});

describe('messages', () => {
  test.each([
    [{}, "option 'socket' is required: the path of the control socket"],
    [{ socket: '' }, "option 'socket' must be the path of the control socket; got \"\""],
    [{ socket: 'x', prot: 1 }, "unknown option 'prot'; the options are socket, port, ratio, name, id, mode, version, tags, files, limits, env, size, maybe, flag"],
    [{ socket: 'x', port: 'x' }, "option 'port' must be a whole number; got \"x\""],
    [{ socket: 'x', port: 1.5 }, "option 'port' must be a whole number; got 1.5"],
    [{ socket: 'x', port: 70000 }, "option 'port' must be a whole number from 0 to 65535; got 70000"],
    [{ socket: 'x', ratio: 1 }, "option 'ratio' must be less than 1; got 1"],
    [{ socket: 'x', ratio: 0 }, "option 'ratio' must be greater than 0; got 0"],
    [{ socket: 'x', name: 'toolong' }, "option 'name' must be at most 4 characters long; got \"toolong\""],
    [{ socket: 'x', id: 'A1' }, "option 'id' must be a string matching /^[a-z]+$/; got \"A1\""],
    [{ socket: 'x', mode: 'slow' }, "option 'mode' must be one of \"fast\", \"safe\"; got \"slow\""],
    [{ socket: 'x', version: 2 }, "option 'version' must be 1; got 2"],
    [{ socket: 'x', tags: ['a'] }, "option 'tags' (item 0) must be at least 2 characters long; got \"a\""],
    [{ socket: 'x', tags: ['ab', 'cd', 'ef'] }, "option 'tags' must be a list of at most 2 items; got a list"],
    [{ socket: 'x', tags: ['ab', 'ab'] }, "option 'tags' must be a list without repeats (items 0 and 1 are equal); got a list"],
    [{ socket: 'x', limits: {} }, "option 'limits' (entry 'hard') is required"],
    [{ socket: 'x', limits: { hard: 1, soft: 0 } }, "option 'limits' (entry 'soft') must be at least 1; got 0"],
    [{ socket: 'x', limits: { hard: 1, firm: 2 } }, "option 'limits' has an unknown key 'firm'; the keys are soft, hard"],
    [{ socket: 'x', env: { PATH: 3 } }, "option 'env' (entry 'PATH') must be a string; got 3"],
    [{ socket: 'x', env: { path: '/bin' } }, "option 'env': the name 'path' must be an upper-case variable name"],
    [{ socket: 'x', size: '12X' }, "option 'size' must be one of the forms the schema allows; got \"12X\""],
    [{ socket: 'x', maybe: 3 }, "option 'maybe' must be a string or null; got 3"],
    [{ socket: 'x', flag: 'yes' }, "option 'flag' must be true or false; got \"yes\""],
    [[], 'the options must be an object; got a list'],
  ])('%j: %s', (input, message) => {
    let error: unknown;
    try {
      check(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OptionsError);
    expect((error as Error).message).toBe(message);
  });

  test('a plugin without properties', () => {
    expect(() => checkOptions({ type: 'object', additionalProperties: false }, { x: 1 })).toThrow("unknown option 'x'; this plugin takes no options");
  });

  test('options that exclude each other (not + required)', () => {
    const exclusive = { type: 'object', not: { type: 'object', required: ['fd', 'tap'] } } as const satisfies OptionsSchema;
    expect(() => checkOptions(exclusive, { fd: 3, tap: 'x' })).toThrow("options 'fd' and 'tap' exclude each other");
    expect(checkOptions(exclusive, { fd: 3 })).toEqual({ fd: 3 });
  });
});

describe('schemas that are not', () => {
  test.each([
    [{ type: 'string' }, 'its options schema must be a JSON Schema object with "type": "object"; got {"type":"string"}'],
    [{ type: 'object', properties: { a: { type: 'integr' } } }, /^its options schema is not valid: .*type/],
    [{ type: 'object', properties: { a: { type: 'string', descripton: 'typo' } } }, /^its options schema is not valid: strict mode: unknown keyword: "descripton"/],
  ])('%j', (bad, message) => {
    expect(() => checkOptions(bad as unknown as OptionsSchema, {})).toThrow(SchemaError);
    expect(() => checkOptions(bad as unknown as OptionsSchema, {})).toThrow(message);
  });
});

describe('types (checked by tsc when the tests compile)', () => {
  test('FromSchema: required and defaulted properties are present, the others optional', () => {
    type Options = FromSchema<typeof schema>;
    const options: Options = { socket: '/s', port: 1 };
    // @ts-expect-error `port` has a default, so it is always there after checking
    const noPort: Options = { socket: '/s' };
    // @ts-expect-error `socket` is required
    const noSocket: Options = { port: 1 };
    const mode: Options['mode'] = 'fast';
    // @ts-expect-error not in the enum
    const badMode: Options['mode'] = 'slow';
    const size: Options['size'] = '12M';
    const maybe: Options['maybe'] = null;
    const env: NonNullable<Options['env']> = { PATH: '/bin' };
    const limits: NonNullable<Options['limits']> = { hard: 1 };
    expect([options, noPort, noSocket, mode, badMode, size, maybe, env, limits]).toHaveLength(9);
  });

  test('a plugin with a schema gets typed options; without one, unchecked values', () => {
    const typed = definePlugin({
      name: 'typed',
      schema: { type: 'object', properties: { port: { type: 'integer', default: 1 } }, additionalProperties: false },
      apply(_vmm, options) {
        const port: number = options.port;
        // @ts-expect-error no such option
        void options.other;
        void port;
      },
    });
    const untyped: Plugin = {
      name: 'untyped',
      apply(_vmm, options) {
        // @ts-expect-error an unchecked value is unknown
        const port: number = options.port;
        void port;
      },
    };
    const unchecked: PluginOptions<undefined> = { anything: 1 } satisfies UncheckedOptions;
    expect(typed.name).toBe('typed');
    expect(typed.schema.properties.port.default).toBe(1);
    expect(untyped.name).toBe('untyped');
    expect(unchecked).toEqual({ anything: 1 });
  });

  test('Plugin<typeof schema> cannot leave the schema out', () => {
    const s = { type: 'object', properties: { a: { type: 'string' } } } as const satisfies OptionsSchema;
    // @ts-expect-error the schema is what makes the options type true
    const lying: Plugin<typeof s> = { name: 'lying', apply() {} };
    expect(lying.name).toBe('lying');
  });
});
