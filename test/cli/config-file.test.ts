/**
 * cli/config-file.ts and the run command's preparation: where config files are found, their
 * shapes, and how flags merge on top. Runs in-process (prepareRun stops before the VM).
 */
import * as path from 'path';
import { prepareRun, type RunFlags } from '../../cli/commands/run';
import { loadConfigFile, mergeConfig, searchConfigFile, toFileConfig } from '../../cli/config-file';
import { DEFAULT_CPUID_HIDE } from '../../core/config';
import { cleanup, makeHome, pluginSource, writeTree } from './fixtures';

const MiB = 1024 * 1024;
const flags = (extra: Partial<RunFlags> = {}): RunFlags => ({ cpuidMask: true, ...extra });

let home: string;
// The search stops at the home directory: keep it inside the temporary tree. (Setting HOME does
// not reach os.homedir() under Jest, whose process.env is a copy.)
let search: { stopDir: string };
beforeEach(() => {
  home = makeHome();
  search = { stopDir: home };
});
afterEach(() => cleanup(home));

describe('finding the config file', () => {
  test.each([
    ['.vmmrc', 'memory: 96M\n'],
    ['.vmmrc.json', { memory: '96M' }],
    ['.vmmrc.yaml', 'memory: 96M\n'],
    ['.vmmrc.yml', 'memory: 96M\n'],
    ['.vmmrc.js', "module.exports = { memory: '96M' };\n"],
    ['.vmmrc.cjs', "module.exports = { memory: '96M' };\n"],
    ['vmm.config.js', "module.exports = { memory: '96M' };\n"],
    ['vmm.config.cjs', "module.exports = { memory: '96M' };\n"],
    ['vmm.config.json', { memory: '96M' }],
    ['vmm.config.yaml', 'memory: 96M\n'],
    ['vmm.config.yml', 'memory: 96M\n'],
    ['package.json', { name: 'p', vmm: { memory: '96M' } }],
  ])('%s', async (file, contents) => {
    writeTree(home, { [`work/${file}`]: contents });
    const found = await searchConfigFile(path.join(home, 'work'), search);
    expect(found?.filepath).toBe(path.join(home, 'work', file));
    expect(found?.config.memory).toBe(96 * MiB);
  });

  test('walks up from a subdirectory', async () => {
    writeTree(home, { 'proj/.vmmrc.json': { cpus: 2 }, 'proj/a/b/.keep': '' });
    const found = await searchConfigFile(path.join(home, 'proj', 'a', 'b'), search);
    expect(found?.filepath).toBe(path.join(home, 'proj', '.vmmrc.json'));
  });

  test('stops at the project root (a package.json without a vmm key)', async () => {
    writeTree(home, { '.vmmrc.json': { cpus: 2 }, 'proj/package.json': { name: 'p' }, 'proj/src/.keep': '' });
    expect(await searchConfigFile(path.join(home, 'proj', 'src'), search)).toBeNull();
  });

  test('stops at the home directory', async () => {
    writeTree(home, { 'home/user/.keep': '', 'home/.vmmrc.json': { cpus: 2 } });
    expect(await searchConfigFile(path.join(home, 'home', 'user'), { stopDir: path.join(home, 'home', 'user') })).toBeNull();
    expect(await searchConfigFile(path.join(home, 'home', 'user'), { stopDir: home })).not.toBeNull();
  });

  test('the first search place wins within a directory', async () => {
    writeTree(home, { 'w/package.json': { name: 'p', vmm: { cpus: 3 } }, 'w/vmm.config.json': { cpus: 4 } });
    expect((await searchConfigFile(path.join(home, 'w'), search))?.config.cpus).toBe(3);
  });

  test('an empty package.json vmm key still stops there', async () => {
    writeTree(home, { 'w/package.json': { name: 'p' } });
    expect(await searchConfigFile(path.join(home, 'w'), search)).toBeNull();
  });

  test('loadConfigFile reads exactly the file named', async () => {
    writeTree(home, { 'a/custom.yaml': 'cpus: 5\n' });
    const file = await loadConfigFile(path.join(home, 'a', 'custom.yaml'));
    expect(file.config).toEqual({ cpus: 5 });
  });

  test('loadConfigFile: a missing file and a bad one name the file', async () => {
    await expect(loadConfigFile(path.join(home, 'missing.json'))).rejects.toThrow(`${home}/missing.json: no such config file`);
    writeTree(home, { 'bad.yaml': 'cpus: [1\n' });
    await expect(loadConfigFile(path.join(home, 'bad.yaml'))).rejects.toThrow(`${home}/bad.yaml: cannot parse the config file: `);
    writeTree(home, { 'bad.js': 'throw new Error("oops")' });
    await expect(loadConfigFile(path.join(home, 'bad.js'))).rejects.toThrow(`${home}/bad.js: cannot load the config file: oops`);
  });
});

describe('config file shapes', () => {
  const file = (raw: unknown, sections: string[] = []) =>
    toFileConfig(raw, path.join(home, 'conf', 'vmm.config.json'), { pluginSections: sections });
  const names = (raw: unknown, sections: string[] = []) => file(raw, sections).plugins.map((p) => p.spec);

  test('plugins as a list of names and specs', () => {
    expect(names({ plugins: ['virtio-net', { name: './p.js', options: { a: 1 } }] })).toEqual([
      { name: 'virtio-net', options: {} },
      { name: './p.js', options: { a: 1 } },
    ]);
  });

  test('plugins as a map of name to options (true/null: none, false: left out)', () => {
    expect(names({ plugins: { 'virtio-net': { tap: 'tap0' }, a: true, b: null, c: false } })).toEqual([
      { name: 'virtio-net', options: { tap: 'tap0' } },
      { name: 'a', options: {} },
      { name: 'b', options: {} },
    ]);
  });

  test('a first-party plugin section enables the plugin with its options', () => {
    expect(names({ plugins: ['virtio-net'], control: { socket: '/run/vmm.sock' } }, ['control', 'virtio-net'])).toEqual([
      { name: 'virtio-net', options: {} },
      { name: 'control', options: { socket: '/run/vmm.sock' } },
    ]);
  });

  test('a section gives the options of a plugin listed without options', () => {
    expect(names({ plugins: ['control', 'x'], control: { socket: 's' } }, ['control'])).toEqual([
      { name: 'control', options: { socket: 's' } },
      { name: 'x', options: {} },
    ]);
  });

  test('options in both places are refused', () => {
    expect(() => file({ plugins: [{ name: 'control', options: { a: 1 } }], control: { socket: 's' } }, ['control'])).toThrow(
      "plugin 'control' gets options both in plugins and in its 'control' section",
    );
  });

  test('an unknown key lists the keys and the plugin sections', () => {
    expect(() => file({ contrl: {} }, ['control'])).toThrow(
      "unknown key 'contrl'; the known keys are kernel, initrd, cmdline, memory, cpus, cpuidHide, unclaimedAccess, plugins, and the plugin sections control",
    );
  });

  test('kernel and initrd resolve against the file directory', () => {
    expect(file({ kernel: 'images/vmlinux', initrd: '/abs/initrd' }).config).toEqual({
      kernel: path.join(home, 'conf', 'images', 'vmlinux'),
      initrd: '/abs/initrd',
    });
  });

  test('plugins resolve against the file directory', () => {
    expect(file({ plugins: ['./p.js'] }).plugins[0].baseDir).toBe(path.join(home, 'conf'));
  });

  test.each<[unknown, string]>([
    ['just a string', 'the configuration must be an object of settings; got "just a string"'],
    [{ plugins: 5 }, 'plugins must be a list of plugin names or { name, options }, or a map of name to options; got 5'],
    [{ plugins: { a: 'yes' } }, "plugins.a must be an object of plugin options (or true, or false to leave it out); got \"yes\""],
    [{ control: [] }, "section 'control' must be an object of plugin options"],
  ])('%j is refused', (raw, message) => {
    expect(() => file(raw, ['control'])).toThrow(message);
  });

  test('an empty file is an empty config', () => {
    expect(file(undefined)).toEqual({ filepath: path.join(home, 'conf', 'vmm.config.json'), config: {}, plugins: [] });
  });
});

describe('merging with the command line', () => {
  test('flags override file values; --plugin appends, and replaces a file plugin of the same name', () => {
    const file = toFileConfig(
      { memory: '128M', cpus: 2, cmdline: 'console=ttyS0', plugins: { a: { x: 1 }, b: {} } },
      path.join(home, 'conf', 'vmm.config.json'),
      { pluginSections: [] },
    );
    const cli = {
      config: { memory: 256 * MiB, plugins: [{ name: 'c', options: {} }, { name: 'a', options: { x: 2 } }] },
      plugins: [
        { spec: { name: 'c', options: {} }, baseDir: '/cwd' },
        { spec: { name: 'a', options: { x: 2 } }, baseDir: '/cwd' },
      ],
    };
    const { config, plugins } = mergeConfig(file, cli);
    expect(config).toEqual({
      kernel: null,
      initrd: null,
      cmdline: 'console=ttyS0',
      memory: 256 * MiB,
      cpus: 2,
      cpuidHide: [...DEFAULT_CPUID_HIDE],
      unclaimedAccess: 'stop',
      plugins: [{ name: 'a', options: { x: 2 } }, { name: 'b', options: {} }, { name: 'c', options: {} }],
    });
    expect(plugins.map((p) => p.baseDir)).toEqual(['/cwd', path.join(home, 'conf'), '/cwd']);
  });
});

describe('prepareRun: file + flags → config and loaded plugins', () => {
  test('a plugin in a config file resolves against the file, not the working directory', async () => {
    writeTree(home, {
      'conf/vmm.config.json': { plugins: ['./p.js'] },
      'conf/p.js': pluginSource('conf-plugin'),
      'work/p.js': pluginSource('decoy'),
    });
    const { plugins } = await prepareRun(flags({ config: '../conf/vmm.config.json' }), path.join(home, 'work'), search);
    expect(plugins.map((p) => [p.plugin.name, p.source])).toEqual([['conf-plugin', path.join(home, 'conf', 'p.js')]]);
  });

  test("package.json's vmm key", async () => {
    writeTree(home, {
      'proj/package.json': { name: 'proj', vmm: { memory: '128M', plugins: ['./tools/p.js'] } },
      'proj/tools/p.js': pluginSource('pkg-plugin'),
      'proj/src/.keep': '',
    });
    const { config, plugins } = await prepareRun(flags(), path.join(home, 'proj', 'src'), search);
    expect(config.memory).toBe(128 * MiB);
    expect(plugins[0].plugin.name).toBe('pkg-plugin');
  });

  test('.vmmrc.json', async () => {
    writeTree(home, { 'w/.vmmrc.json': { cpus: 3, unclaimedAccess: 'ignore' } });
    const { config } = await prepareRun(flags(), path.join(home, 'w'), search);
    expect(config).toMatchObject({ cpus: 3, unclaimedAccess: 'ignore' });
  });

  test('--config FILE wins over the file the search would find', async () => {
    writeTree(home, { 'w/vmm.config.json': { cpus: 3 }, 'w/other.json': { cpus: 5 } });
    const { config } = await prepareRun(flags({ config: 'other.json' }), path.join(home, 'w'), search);
    expect(config.cpus).toBe(5);
  });

  test('flags override the file; --plugin options replace the file plugin of the same name', async () => {
    writeTree(home, {
      'w/vmm.config.json': { memory: '128M', cpus: 2, plugins: { './a.js': { from: 'file' }, './b.js': {} } },
      'w/a.js': pluginSource('a'),
      'w/b.js': pluginSource('b'),
      'w/c.js': pluginSource('c'),
    });
    const { config, plugins } = await prepareRun(
      flags({ memory: '512', cpuidMask: false, unclaimed: 'ignore', plugin: ['./c.js', './a.js={"from":"cli"}'] }),
      path.join(home, 'w'),
      search,
    );
    expect(config).toMatchObject({ memory: 512 * MiB, cpus: 2, cpuidHide: [], unclaimedAccess: 'ignore' });
    expect(plugins.map((p) => [p.plugin.name, p.options])).toEqual([
      ['a', { from: 'cli' }],
      ['b', {}],
      ['c', {}],
    ]);
  });

  test('flags name themselves in errors', async () => {
    await expect(prepareRun(flags({ cpus: '0' }), home, search)).rejects.toThrow(/^--cpus must be a whole number from 1 to 64; got 0$/);
    await expect(prepareRun(flags({ plugin: ['a', 'a'] }), home, search)).rejects.toThrow("--plugin lists 'a' twice");
  });

  test('relative --kernel resolves against the working directory and must exist', async () => {
    writeTree(home, { 'w/images/vmlinux': 'not really a kernel' });
    const { config } = await prepareRun(flags({ kernel: 'images/vmlinux', cmdline: 'quiet' }), path.join(home, 'w'), search);
    expect(config).toMatchObject({ kernel: path.join(home, 'w', 'images', 'vmlinux'), cmdline: 'quiet' });
    await expect(prepareRun(flags({ initrd: 'images' }), path.join(home, 'w'), search)).rejects.toThrow(
      `initrd ${path.join(home, 'w', 'images')}: not a file`,
    );
  });
});
