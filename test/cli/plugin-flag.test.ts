/** cli/plugin-flag.ts: `--plugin NAME[=JSON]`. */
import { parsePluginFlag } from '../../cli/plugin-flag';
import { ConfigError } from '../../core/errors';

describe('parsePluginFlag', () => {
  test.each<[string, { name: string; options: Record<string, unknown> }]>([
    ['virtio-net', { name: 'virtio-net', options: {} }],
    ['virtio-net={"tap":"tap0"}', { name: 'virtio-net', options: { tap: 'tap0' } }],
    ['control={"socket":"/run/a=b.sock"}', { name: 'control', options: { socket: '/run/a=b.sock' } }],
    ['./my-plugin.js', { name: './my-plugin.js', options: {} }],
    ['@scope/vmm-plugin={}', { name: '@scope/vmm-plugin', options: {} }],
    ['./dir=x/p.js={"a":1}', { name: './dir=x/p.js', options: { a: 1 } }],
    ['net= { "a": [1, 2] }', { name: 'net', options: { a: [1, 2] } }],
  ])('%p', (flag, spec) => {
    expect(parsePluginFlag(flag)).toEqual(spec);
  });

  test.each([
    ['net={bad', /^--plugin 'net=\{bad': the options for 'net' are not valid JSON: /],
    ['net=', /the options for 'net' are not valid JSON/],
    ['net=tap0', /the options for 'net' are not valid JSON/],
    ['net=[1]', /the options for 'net' must be a JSON object, like net='\{"key":1\}'/],
    ['net=null', /must be a JSON object/],
    ['={"a":1}', /the plugin name is missing/],
    ['', /the plugin name is missing/],
  ])('%p is refused', (flag, message) => {
    expect(() => parsePluginFlag(flag)).toThrow(ConfigError);
    expect(() => parsePluginFlag(flag)).toThrow(message);
  });
});
