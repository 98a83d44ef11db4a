/**
 * The compiled `vmm` executable, run as a child process: help, version, exit codes and the
 * messages users see. Nothing here boots a VM: every case fails before the VM starts, or uses a
 * plugin whose apply() throws.
 */
import * as fs from 'fs';
import * as path from 'path';
import { cleanup, makeHome, markerPluginSource, PACKAGE_JSON, pluginSource, runVmm, writeTree } from './fixtures';

const STACK_LINE = /^\s+at /m;

let home: string;
let work: string;

beforeEach(() => {
  home = makeHome();
  work = path.join(home, 'work');
  fs.mkdirSync(work);
});

afterEach(() => cleanup(home));

const vmm = (...args: string[]) => runVmm(args, work, home);

describe('help and version', () => {
  test('--help lists every option and exits 0', () => {
    const { status, stdout, stderr } = vmm('--help');
    expect(status).toBe(0);
    expect(stderr).toBe('');
    for (const flag of [
      '--kernel', '--initrd', '--cmdline', '--memory', '--cpus', '--plugin', '--config',
      '--no-cpuid-mask', '--unclaimed', '--verbose', '--version', '--help',
    ]) {
      expect(stdout).toContain(flag);
    }
    expect(stdout).toContain('a number of MiB');
  });

  test('run --help lists the run options and the global ones', () => {
    const { status, stdout } = vmm('run', '--help');
    expect(status).toBe(0);
    expect(stdout).toContain('Usage: vmm run [options]');
    expect(stdout).toContain('--memory <size>');
    expect(stdout).toContain('--verbose');
  });

  test.each([['--version'], ['-V']])('%s prints the package version', (flag) => {
    const { version } = JSON.parse(fs.readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
    const { status, stdout } = vmm(flag);
    expect(status).toBe(0);
    expect(stdout.trim()).toBe(version);
  });
});

describe('usage errors exit 2 with one clear line', () => {
  test('unknown flag', () => {
    const { status, stderr, stdout } = vmm('--bogus');
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^vmm: unknown option '--bogus'/);
  });

  test('unknown flag after run', () => {
    const { status, stderr } = vmm('run', '--memroy', '512');
    expect(status).toBe(2);
    expect(stderr).toContain("unknown option '--memroy'");
  });

  test('a stray argument', () => {
    const { status, stderr } = vmm('bogus');
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: unexpected argument 'bogus'/);
  });

  test.each([['0'], ['1K'], ['abc'], ['100T'], ['-5'], ['']])('--memory %p', (value) => {
    const { status, stderr } = vmm('--memory', value);
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: --memory must be /);
    expect(stderr).not.toMatch(STACK_LINE);
  });

  test('--memory names the limits and what was given', () => {
    const { stderr } = vmm('--memory', '1K');
    expect(stderr).toMatch(/between 4 MiB and [\d.]+ [GT]iB \(host has [\d.]+ [GT]iB\); got 1 KiB/);
  });

  test.each([['0'], ['65'], ['two'], ['1.5']])('--cpus %p', (value) => {
    const { status, stderr } = vmm('--cpus', value);
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: --cpus must be a whole number from 1 to 64/);
  });

  test('--unclaimed with a bad policy', () => {
    const { status, stderr } = vmm('--unclaimed', 'maybe');
    expect(status).toBe(2);
    expect(stderr).toContain('stop, ignore');
  });

  test('--plugin with invalid JSON names the plugin and the JSON problem', () => {
    const { status, stderr } = vmm('--plugin', 'virtio-net={"tap": tap0}');
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: --plugin 'virtio-net=\{"tap": tap0\}': the options for 'virtio-net' are not valid JSON: /);
  });

  test('--plugin with JSON that is not an object', () => {
    const { status, stderr } = vmm('--plugin', 'virtio-net=[1,2]');
    expect(status).toBe(2);
    expect(stderr).toContain("the options for 'virtio-net' must be a JSON object");
  });

  test('unknown plugin lists every place tried', () => {
    const { status, stderr } = vmm('--plugin', 'no-such-plugin');
    expect(status).toBe(2);
    expect(stderr).toBe(
      `vmm: cannot find plugin 'no-such-plugin': tried first-party plugin dist/plugins/no-such-plugin, ` +
        `npm package 'no-such-plugin' from ${work}\n`,
    );
  });

  test('unknown plugin file names the absolute path tried', () => {
    const { status, stderr } = vmm('--plugin', './plugins/missing.js');
    expect(status).toBe(2);
    expect(stderr).toBe(`vmm: cannot find plugin './plugins/missing.js': tried file ${work}/plugins/missing.js\n`);
  });

  test('config file with an unknown key names the file and the key', () => {
    writeTree(work, { 'vmm.config.json': { memroy: '512M' } });
    const { status, stderr } = vmm();
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: vmm.config.json: unknown key 'memroy'; the known keys are kernel, initrd, cmdline, memory, cpus/);
  });

  test('config file with a bad value names the file and the field', () => {
    writeTree(work, { '.vmmrc.json': { memory: '1K' } });
    const { status, stderr } = vmm();
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: \.vmmrc\.json: memory must be between 4 MiB and /);
  });

  test('config file that does not parse names the file', () => {
    writeTree(work, { 'vmm.config.json': '{ "memory": "512M", }' });
    const { status, stderr } = vmm();
    expect(status).toBe(2);
    expect(stderr).toMatch(/^vmm: vmm.config.json: cannot parse the config file: /);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });

  test('--config with a missing file', () => {
    const { status, stderr } = vmm('--config', 'nope.json');
    expect(status).toBe(2);
    expect(stderr).toBe('vmm: nope.json: no such config file\n');
  });

  test('--kernel that does not exist', () => {
    const { status, stderr } = vmm('--kernel', 'bzImage');
    expect(status).toBe(2);
    expect(stderr).toBe(`vmm: kernel ${work}/bzImage: no such file\n`);
  });
});

describe('plugins that fail to load', () => {
  test('a plugin module that throws while loading: its name and message, no stack', () => {
    writeTree(work, { 'broken.js': "throw new Error('missing TAP device');\n" });
    const { status, stderr } = vmm('--plugin', './broken.js');
    expect(status).toBe(2);
    expect(stderr).toBe(`vmm: failed to load plugin './broken.js' (${work}/broken.js): missing TAP device\n`);
    expect(stderr).not.toMatch(STACK_LINE);
  });

  test('with --verbose the stack is shown too', () => {
    writeTree(work, { 'broken.js': "throw new Error('missing TAP device');\n" });
    const { status, stderr } = vmm('--verbose', '--plugin', './broken.js');
    expect(status).toBe(2);
    expect(stderr).toContain("failed to load plugin './broken.js'");
    expect(stderr).toMatch(STACK_LINE);
  });

  test('a module that exports no plugin says what it found', () => {
    writeTree(work, { 'empty.js': 'module.exports = { nam: "x", apply: 1 };\n' });
    const { status, stderr } = vmm('--plugin', './empty.js');
    expect(status).toBe(2);
    expect(stderr).toContain("plugin './empty.js'");
    expect(stderr).toContain('found an object with keys nam, apply');
  });

  test('two plugins with the same name', () => {
    writeTree(work, { 'a.js': pluginSource('same'), 'b.js': pluginSource('same') });
    const { status, stderr } = vmm('--plugin', './a.js', '--plugin', './b.js');
    expect(status).toBe(2);
    expect(stderr).toContain(`two plugins are named 'same': ${work}/a.js and ${work}/b.js`);
  });
});

describe('plugins that load reach the VM runner', () => {
  // The marker plugin's apply() throws, so the run ends with exit 2 (a plugin refusing to start,
  // before anything started) whether or not this machine can start VMs; what matters is that the
  // plugin was found and loaded.
  test('a plugin named in a config file resolves against the file, not the working directory', () => {
    writeTree(home, {
      'conf/vmm.config.json': { plugins: ['./plugins/marker.js'] },
      'conf/plugins/marker.js': markerPluginSource('marker', 'MARKER LOADED'),
    });
    const { status, stderr } = vmm('--config', '../conf/vmm.config.json');
    expect(stderr).toContain('MARKER LOADED');
    expect(stderr).not.toContain('cannot find plugin');
    expect(status).toBe(2);
  });

  test("a plugin from package.json's vmm key, found from a subdirectory", () => {
    writeTree(work, {
      'package.json': { name: 'guest-project', private: true, vmm: { plugins: { './marker.js': {} } } },
      'marker.js': markerPluginSource('marker', 'PACKAGE MARKER'),
      'sub/dir/.keep': '',
    });
    const { status, stderr } = runVmm([], path.join(work, 'sub', 'dir'), home);
    expect(stderr).toContain('PACKAGE MARKER');
    expect(status).toBe(2);
  });
});
