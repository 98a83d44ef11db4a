/**
 * `vmm` booting real guests through its real entry point: the compiled CLI in a child process,
 * with plugins from the command line, a config file and package.json.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CLI, PROBE_GUEST, ROOT } from '../helpers/guest-run';

interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function vmm(args: string[], options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; user?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      uid: options.user,
      gid: options.user,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    if (options.input !== undefined) child.stdin.end(options.input);
  });
}

const HWRNG = path.join(ROOT, 'examples', 'vmm-plugin-hwrng');
let dir: string;

beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-cli-')); });
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

test('`vmm` with no kernel boots the built-in demo guest, which echoes a line and powers off', async () => {
  const r = await vmm([], { input: 'hello from the host\n' });
  expect(r.stdout).toContain('vmm demo guest');
  expect(r.stdout).toContain('you typed: hello from the host');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
});

test('exit codes say how the guest ended', async () => {
  expect((await vmm(['run', '--kernel', PROBE_GUEST, '--cmdline', 'exit:9'])).code).toBe(4);
  const crash = await vmm(['--kernel', PROBE_GUEST, '--cmdline', 'triple']);
  expect(crash.code).toBe(3);
  expect(crash.stderr).toMatch(/^vmm: the guest crashed on vCPU 0: triple fault/);
  const unclaimed = await vmm(['--kernel', PROBE_GUEST, '--cmdline', 'inb:0x7e0']);
  expect(unclaimed.code).toBe(3);
  expect(unclaimed.stderr).toContain('read 1 bytes from unclaimed port 0x7e0');
  expect((await vmm(['--kernel', PROBE_GUEST, '--cmdline', 'inb:0x7e0', '--unclaimed', 'ignore'])).stdout).toContain('probe: inb 0x7e0 = 0xff');
});

test('a corrupt kernel and a missing /dev/kvm are plain errors, not stack traces', async () => {
  const bad = path.join(dir, 'kernel.bin');
  fs.writeFileSync(bad, 'not a kernel at all');
  const r = await vmm(['--kernel', bad]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^vmm: .*kernel\.bin.*not an ELF executable or a Linux bzImage/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const nokvm = await vmm(['--kernel', PROBE_GUEST], { env: { VMM_KVM_DEVICE: '/nonexistent/kvm' } });
  expect(nokvm.code).toBe(1);
  expect(nokvm.stderr).toContain('cannot open /nonexistent/kvm: it does not exist');
});

test('without permission to open /dev/kvm the error says so', async () => {
  const mode = fs.statSync('/dev/kvm').mode & 0o777;
  // Run as nobody; /dev/kvm must not be world-writable for this to mean anything.
  if ((mode & 0o006) === 0o006) throw new Error('/dev/kvm is world read-writable here; cannot test EACCES');
  const r = await vmm(['--kernel', PROBE_GUEST], { user: 65534 });
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('cannot open /dev/kvm: permission denied');
});

describe('plugins', () => {
  const readsRng = 'inl:0x7e0 inl:0x7e0 inl:0x7e4';
  const expectRng = (out: string) => {
    const values = [...out.matchAll(/probe: inl 0x7e0 = (0x[0-9a-f]+)/g)].map((m) => m[1]);
    expect(values).toHaveLength(2);
    expect(out).toContain('probe: inl 0x7e4 = 0x2');
  };

  test('the example third-party plugin loads from a config file, relative to that file', async () => {
    const project = path.join(dir, 'project');
    fs.mkdirSync(project);
    fs.cpSync(HWRNG, path.join(project, 'plugins', 'hwrng'), { recursive: true });
    fs.writeFileSync(path.join(project, 'vmm.config.json'), JSON.stringify({
      kernel: PROBE_GUEST,
      cmdline: readsRng,
      plugins: [{ name: './plugins/hwrng', options: { port: 0x7e0 } }],
    }));
    const sub = path.join(project, 'sub');
    fs.mkdirSync(sub);
    const r = await vmm([], { cwd: project });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectRng(r.stdout);
    // --config from elsewhere resolves the plugin relative to the file, not the cwd.
    const again = await vmm(['--config', path.join(project, 'vmm.config.json')], { cwd: dir });
    expect(again.code).toBe(0);
    expectRng(again.stdout);
  });

  test('from package.json and from --plugin', async () => {
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
      name: 'my-vm', vmm: { kernel: PROBE_GUEST, cmdline: readsRng, plugins: [HWRNG] },
    }));
    const r = await vmm([], { cwd: dir });
    expect(r.code).toBe(0);
    expectRng(r.stdout);
    const flag = await vmm(['--kernel', PROBE_GUEST, '--cmdline', 'inl:0x7f0', '--plugin', `${HWRNG}={"port":2032}`]);
    expect(flag.code).toBe(0);
    expect(flag.stdout).toMatch(/probe: inl 0x7f0 = 0x[0-9a-f]+/);
  });

  test('a bad plugin option names the plugin and the option', async () => {
    const r = await vmm(['--kernel', PROBE_GUEST, '--plugin', `${HWRNG}={"port":"x"}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/hwrng.*option 'port' must be an I\/O port number/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
