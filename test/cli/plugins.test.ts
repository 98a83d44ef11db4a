/**
 * The CLI and plugins: `vmm help PLUGIN`, exit 2 for every way a plugin refuses before anything
 * starts (its schema, its apply, its configure tap, the control plugin's options), and the
 * exit code a shutdown tap sees when `vmm run` is stopped by SIGTERM.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { PROBE_GUEST, ROOT } from '../helpers/guest-run';
import { cleanup, makeHome, pluginSource, runVmm, VMM, writeTree } from './fixtures';

let home: string;
beforeEach(() => { home = makeHome(); });
afterEach(() => cleanup(home));

describe('vmm help PLUGIN', () => {
  test("a first-party plugin's options, from its schema", () => {
    const { status, stdout, stderr } = runVmm(['help', 'virtio-net'], home, home);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(stdout).toMatch(/^plugin 'virtio-net' \(first-party virtio-net\)\n\noptions:\n {2}tap {5}string\n/);
    expect(stdout).toContain('  mtu     integer 68 to 65535\n          a whole number from 68 to 65535: the MTU offered to the guest\n');
    expect(runVmm(['help', 'control'], home, home).stdout).toContain('  socket           string (a path), required\n');
  });

  test('a plugin file, resolved from the working directory, the example included', () => {
    const { status, stdout } = runVmm(['help', path.join(ROOT, 'examples', 'vmm-plugin-hwrng')], home, home);
    expect(status).toBe(0);
    expect(stdout).toContain('  port    integer 0 to 65528, default 2016\n');
    expect(stdout).toContain('  source  string (a path)\n');
    writeTree(home, { 'bare.js': pluginSource('bare') });
    expect(runVmm(['help', './bare.js'], home, home).stdout).toBe(`plugin 'bare' (${home}/bare.js) declares no options schema: it takes the options its documentation describes.\n`);
  });

  test('an unknown plugin exits 2 with the places tried; `vmm help` alone is the usage', () => {
    const unknown = runVmm(['help', 'nope'], home, home);
    expect(unknown.stderr).toMatch(/^vmm: cannot find plugin 'nope': tried /);
    expect(unknown.status).toBe(2);
    const usage = runVmm(['help'], home, home);
    expect(usage.status).toBe(0);
    expect(usage.stdout).toMatch(/^Usage: vmm /);
    expect(usage.stdout).toContain("help [plugin]");
  });
});

describe('a plugin refusing before anything starts exits 2', () => {
  test.each([
    ['its apply throws', "apply() { throw new Error(\"option 'port' is taken\"); }", "vmm: plugin 'picky' (PATH) failed to start: option 'port' is taken\n"],
    ['its configure tap throws', "apply(vmm) { vmm.hooks.configure.tap('picky', () => { throw new Error('needs 2 vCPUs'); }); }", "vmm: plugin 'picky' failed in its configure hook: needs 2 vCPUs\n"],
  ])('%s', (_what, body, message) => {
    writeTree(home, { 'picky.js': `module.exports = { name: 'picky', ${body} };\n` });
    const { status, stderr } = runVmm(['--kernel', PROBE_GUEST, '--plugin', './picky.js'], home, home);
    expect(stderr).toBe(message.replace('PATH', `${home}/picky.js`));
    expect(status).toBe(2);
  });

  test("the control plugin's bad options, from --plugin and from its config section", () => {
    const flag = runVmm(['--kernel', PROBE_GUEST, '--plugin', 'control={"socket":"/tmp/x.sock","maxFds":300}'], home, home);
    expect(flag.stderr).toBe("vmm: plugin 'control' (first-party control): option 'maxFds' must be a whole number from 0 to 253; got 300\n");
    expect(flag.status).toBe(2);
    writeTree(home, { 'vmm.config.json': { kernel: PROBE_GUEST, control: { socket: 'x.sock', allowAnyUid: 'yes' } } });
    const file = runVmm([], home, home);
    expect(file.stderr).toBe("vmm: plugin 'control' (first-party control): option 'allowAnyUid' must be true or false; got \"yes\"\n");
    expect(file.status).toBe(2);
  });
});

test('stopped by SIGTERM, vmm exits 143 and the shutdown and afterShutdown taps already saw 143', async () => {
  const seen = path.join(home, 'seen.json');
  writeTree(home, {
    'witness.js': `const fs = require('fs');
module.exports = { name: 'witness', apply(vmm) {
  const codes = [];
  vmm.hooks.shutdown.tap('witness', (exit) => { codes.push(exit.exitCode); });
  vmm.hooks.afterShutdown.tap('witness', (exit) => { codes.push(exit.exitCode, exit.message); fs.writeFileSync(${JSON.stringify(seen)}, JSON.stringify(codes)); });
} };\n`,
  });
  const child = spawn(process.execPath, [VMM, '--kernel', PROBE_GUEST, '--cmdline', 'wait', '--plugin', './witness.js'], { cwd: home, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    if (stdout.includes('probe: start')) child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  expect(code).toBe(143);
  expect(JSON.parse(fs.readFileSync(seen, 'utf8'))).toEqual([143, 143, 'stopped by SIGTERM.']);
});
