/** core/plugins/help.ts: what `vmm help PLUGIN` prints, from the plugin's schema. */
import { formatPluginHelp } from '../../core/plugins/help';

test('each option: its kind, required or default, and its description', () => {
  const plugin = {
    name: 'demo',
    schema: {
      type: 'object',
      description: 'a demonstration device',
      properties: {
        socket: { type: 'string', resolvePath: true, description: 'the socket to serve' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 2016 },
        mode: { enum: ['fast', 'safe'] },
        files: { type: 'array', items: { type: 'string', resolvePath: true } },
        env: { type: 'object', additionalProperties: { type: 'string' } },
        size: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string' }] },
      },
      required: ['socket'],
      additionalProperties: false,
    },
    apply() {},
  } as const;
  expect(formatPluginHelp({ plugin, source: 'test' })).toBe([
    "plugin 'demo' (test): a demonstration device",
    '',
    'options:',
    '  socket  string (a path), required',
    '          the socket to serve',
    '  port    integer 0 to 65535, default 2016',
    '  mode    one of "fast", "safe"',
    '  files   list of string (a path)',
    '  env     object of string',
    '  size    integer ≥ 1 or string',
    '',
  ].join('\n'));
});

test('no schema, no properties, and a schema that allows other options', () => {
  expect(formatPluginHelp({ plugin: { name: 'bare', apply() {} }, source: 'x' }))
    .toBe("plugin 'bare' (x) declares no options schema: it takes the options its documentation describes.\n");
  expect(formatPluginHelp({ plugin: { name: 'none', schema: { type: 'object', additionalProperties: false }, apply() {} }, source: 'x' }))
    .toBe("plugin 'none' (x)\n\n  (no options)\n");
  expect(formatPluginHelp({ plugin: { name: 'open', schema: { type: 'object', properties: { a: { type: 'boolean' } } }, apply() {} }, source: 'x' }))
    .toBe("plugin 'open' (x)\n\noptions:\n  a  boolean\n\n  (other options are allowed too)\n");
});
