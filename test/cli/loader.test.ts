/** core/plugins/loader.ts: resolution order, export shapes, and the errors users see. */
import * as path from 'path';
import { PluginError } from '../../core/errors';
import { firstPartyPluginNames, loadPlugin, loadPlugins, resolvePlugin } from '../../core/plugins/loader';
import { cleanup, makeHome, pluginSource, runVmm, writeTree } from './fixtures';

let root: string;
beforeEach(() => {
  root = makeHome();
});
afterEach(() => cleanup(root));

describe('resolution', () => {
  test('a relative path resolves against baseDir, with or without the extension', () => {
    writeTree(root, { 'conf/p.js': pluginSource('from-conf') });
    const loaded = loadPlugin({ name: './p.js', options: { a: 1 } }, path.join(root, 'conf'));
    expect(loaded.plugin.name).toBe('from-conf');
    expect(loaded.options).toEqual({ a: 1 });
    expect(loaded.source).toBe(path.join(root, 'conf', 'p.js'));
    expect(loadPlugin({ name: './p' }, path.join(root, 'conf')).plugin.name).toBe('from-conf');
  });

  test('a name with a slash or a .js ending is tried as a file first', () => {
    writeTree(root, { 'plugins/x.js': pluginSource('x'), 'y.cjs': pluginSource('y') });
    expect(loadPlugin({ name: 'plugins/x.js' }, root).source).toBe(path.join(root, 'plugins', 'x.js'));
    expect(loadPlugin({ name: 'y.cjs' }, root).plugin.name).toBe('y');
  });

  test('an npm package resolves from baseDir', () => {
    writeTree(root, {
      'node_modules/vmm-plugin-test/package.json': { name: 'vmm-plugin-test', main: 'lib/main.js' },
      'node_modules/vmm-plugin-test/lib/main.js': pluginSource('pkg'),
      'project/sub/.keep': '',
    });
    const loaded = loadPlugin({ name: 'vmm-plugin-test' }, path.join(root, 'project', 'sub'));
    const file = path.join(root, 'node_modules', 'vmm-plugin-test', 'lib', 'main.js');
    expect(loaded.plugin.name).toBe('pkg');
    expect(loaded.source).toBe(`npm package vmm-plugin-test (${file})`);
    expect(loaded.options).toEqual({});
  });

  test('a scoped npm package is not mistaken for a path', () => {
    writeTree(root, {
      'node_modules/@acme/vmm-disk/package.json': { name: '@acme/vmm-disk' },
      'node_modules/@acme/vmm-disk/index.js': pluginSource('acme-disk'),
    });
    expect(loadPlugin({ name: '@acme/vmm-disk' }, root).plugin.name).toBe('acme-disk');
  });

  test('an unknown name lists every place tried', () => {
    const cwd = process.cwd();
    const expected =
      `cannot find plugin 'nope': tried first-party plugin dist/plugins/nope, ` +
      `npm package 'nope' from ${root} and ${cwd}`;
    expect(() => loadPlugin({ name: 'nope' }, root)).toThrow(PluginError);
    expect(() => loadPlugin({ name: 'nope' }, root)).toThrow(expected);
  });

  test('a file-like name lists the file and the package tried', () => {
    expect(() => loadPlugin({ name: 'lib/nope.js' }, root)).toThrow(
      `cannot find plugin 'lib/nope.js': tried file ${root}/lib/nope.js, npm package 'lib/nope.js' from ${root}`,
    );
  });

  test('an explicit path is only ever a file', () => {
    expect(() => loadPlugin({ name: '../nope.js' }, root)).toThrow(
      `cannot find plugin '../nope.js': tried file ${path.dirname(root)}/nope.js`,
    );
  });

  test('first-party plugins resolve to dist/plugins/<name>/index.js before anything else', () => {
    // Whatever this build ships; resolved only, since loading them is their own tests' business.
    const dist = path.join(__dirname, '..', '..', 'plugins');
    for (const name of firstPartyPluginNames()) {
      writeTree(root, { [`node_modules/${name}/index.js`]: pluginSource('impostor') });
      expect(resolvePlugin(name, root)).toEqual({ file: path.join(dist, name, 'index.js'), source: `first-party ${name}` });
    }
  });
});

describe('what a module must export', () => {
  test('module.exports.default is accepted (compiled `export default`)', () => {
    writeTree(root, { 'd.js': 'exports.default = { name: "d", apply() {} };' });
    expect(loadPlugin({ name: './d.js' }, root).plugin.name).toBe('d');
  });

  test.each([
    ['module.exports = function Plugin() {};', "found a function 'Plugin' (export an instance, not a class or factory)"],
    ['module.exports = {};', 'found an empty object'],
    ['module.exports = { name: "x" };', 'found an object with keys name'],
    ['module.exports = { name: "", apply() {} };', 'found an object with keys name, apply'],
    ['module.exports = 42;', 'found 42'],
  ])('%s is refused', (source, found) => {
    writeTree(root, { 'bad.js': source });
    expect(() => loadPlugin({ name: './bad.js' }, root)).toThrow(
      `plugin './bad.js' (${root}/bad.js) does not export a plugin: expected an object with a string 'name' and an 'apply' function (module.exports or default), ${found}`,
    );
  });

  test('a module that throws while loading: the plugin and the first line of the message', () => {
    writeTree(root, { 'boom.js': 'throw new Error("no TAP device\\nmore detail");' });
    let error: unknown;
    try {
      loadPlugin({ name: './boom.js' }, root);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PluginError);
    expect((error as PluginError).message).toBe(`failed to load plugin './boom.js' (${root}/boom.js): no TAP device`);
    expect(((error as PluginError).cause as Error).message).toBe('no TAP device\nmore detail');
  });

  test('a module with a syntax error', () => {
    writeTree(root, { 'syntax.js': 'module.exports = {;' });
    expect(() => loadPlugin({ name: './syntax.js' }, root)).toThrow(/^failed to load plugin '.\/syntax.js' \(.*\): /);
  });

  test('a module whose own dependency is missing is reported as failing to load, not as not found', () => {
    writeTree(root, { 'dep.js': 'require("vmm-no-such-dependency"); module.exports = {};' });
    // (Jest's own require words the cause a little differently from Node's.)
    expect(() => loadPlugin({ name: './dep.js' }, root)).toThrow(
      /^failed to load plugin '.\/dep.js' \(.*\/dep.js\): .*Cannot find module 'vmm-no-such-dependency'/,
    );
  });
});

describe('loadPlugins', () => {
  test('keeps the order', () => {
    writeTree(root, { 'a.js': pluginSource('a'), 'b.js': pluginSource('b') });
    const loaded = loadPlugins([
      { spec: { name: './b.js' }, baseDir: root },
      { spec: { name: './a.js' }, baseDir: root },
    ]);
    expect(loaded.map((p) => p.plugin.name)).toEqual(['b', 'a']);
  });

  test('refuses two plugins with the same name', () => {
    writeTree(root, { 'a.js': pluginSource('same'), 'b.js': pluginSource('same') });
    expect(() =>
      loadPlugins([
        { spec: { name: './a.js' }, baseDir: root },
        { spec: { name: './b.js' }, baseDir: root },
      ]),
    ).toThrow(`two plugins are named 'same': ${root}/a.js and ${root}/b.js; a VM can use each plugin once`);
  });
});

describe('options checked against the plugin schema', () => {
  const schemaPlugin = (name: string) => `module.exports = {
  name: ${JSON.stringify(name)},
  schema: {
    type: 'object',
    properties: {
      port: { type: 'integer', minimum: 0, maximum: 65535, default: 1792 },
      log: { type: 'string', resolvePath: true },
    },
    additionalProperties: false,
  },
  apply() { throw new Error('apply must not run in these tests'); },
};\n`;

  test('at load time: defaults filled in, paths resolved against baseDir', () => {
    writeTree(root, { 'conf/p.js': schemaPlugin('typed') });
    const loaded = loadPlugin({ name: './p.js', options: { log: 'out/x.log' } }, path.join(root, 'conf'));
    expect(loaded.options).toEqual({ port: 1792, log: path.join(root, 'conf', 'out', 'x.log') });
    expect(loaded.baseDir).toBe(path.join(root, 'conf'));
  });

  test('a refused option is a PluginError naming the plugin, where it came from and the option', () => {
    writeTree(root, { 'p.js': schemaPlugin('typed') });
    expect(() => loadPlugin({ name: './p.js', options: { port: -1 } }, root)).toThrow(PluginError);
    expect(() => loadPlugin({ name: './p.js', options: { prot: 1 } }, root))
      .toThrow(`plugin 'typed' (${root}/p.js): unknown option 'prot'; the options are port, log`);
  });

  test('a schema that is not one names the plugin as broken', () => {
    writeTree(root, { 'bad.js': 'module.exports = { name: "bad", schema: { type: "object", properties: { a: { typ: "string" } } }, apply() {} };' });
    expect(() => loadPlugin({ name: './bad.js' }, root))
      .toThrow(new RegExp(`^plugin 'bad' \\(${root}/bad.js\\) is broken: its options schema is not valid: strict mode: unknown keyword: "typ"`));
  });

  test('vmm exits 2 for a refused option, from a config file and from --plugin alike, before anything starts', () => {
    writeTree(root, { 'project/plugins/p.js': schemaPlugin('typed'), 'project/vmm.config.json': { plugins: [{ name: './plugins/p.js', options: { port: 'x' } }] } });
    const fromFile = runVmm([], path.join(root, 'project'), root);
    expect(fromFile.stderr).toBe("vmm: plugin 'typed' (" + path.join(root, 'project', 'plugins', 'p.js') + "): option 'port' must be a whole number; got \"x\"\n");
    expect(fromFile.status).toBe(2);
    const fromFlag = runVmm(['--config', '/dev/null', '--plugin', `${path.join(root, 'project', 'plugins', 'p.js')}={"port":"x"}`], root, root);
    expect(fromFlag.stderr).toBe(fromFile.stderr);
    expect(fromFlag.status).toBe(2);
  });
});
