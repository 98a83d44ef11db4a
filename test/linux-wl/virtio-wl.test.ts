/**
 * The virtio_wl guest driver (guest/linux/virtio_wl) and libvirtwl in a real Linux guest,
 * against real host peers: the Unix socket test/linux-wl/peer.ts serves (socket name "peer")
 * and a headless weston (the unnamed socket). One guest per describe runs every case of the
 * in-guest program wltest (guest/linux/tests-wl/wltest.c), which checks each reply itself and
 * prints "ok"/"not ok" lines; here each case must pass, and what only the host can see is
 * checked too: the features negotiated, weston's globals as host wayland-info lists them, vmm's
 * fd count back at its baseline, no kernel oops.
 *
 * Twice: with VIRTIO_RING_F_EVENT_IDX negotiated (as Linux does when offered) and refused
 * (virtio_wl.event_idx=0 on the kernel command line). The fixture kernel must have
 * CONFIG_VIRTIO_WL=y (guest/linux/patches/0010-virtio-wl-driver.patch).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LinuxConsole } from '../helpers/linux-console';
import { linuxFixture, LINUX_BOOT_TIMEOUT_MS } from '../helpers/linux-guest';
import { until } from '../helpers/wait';
import { hostGlobals, startHeadlessWeston, type Weston } from '../plugins/virtio-wl/weston-fixture';
import { buildWltest, initramfsWith } from './guest-programs';
import { WlTestPeer } from './peer';

const VIRTIO_WL_F_TRANS_FLAGS = 1;
const VIRTIO_RING_F_EVENT_IDX = 29;
const VIRTIO_WL_F_SEND_DONTWAIT = 23;
/** Generous: the guest kernel runs emulated on the CI hosts (a system call costs ~0.2 ms). */
const CASE_TIMEOUT_MS = 240_000;

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** wltest's verdict lines: every check passed, and the case says so. */
function expectPassed(name: string, output: string, status: number): void {
  const failed = output.split('\n').filter((l) => l.startsWith('not ok'));
  expect({ name, failed, status, tail: failed.length || status ? output.slice(-3000) : '' }).toEqual({ name, failed: [], status: 0, tail: '' });
  expect(output).toContain(`${name}: passed`);
}

describe.each([
  ['EVENT_IDX negotiated', '', true],
  ['EVENT_IDX refused', 'virtio_wl.event_idx=0', false],
])('virtio_wl in a Linux guest (%s)', (_mode, cmdline, eventIdx) => {
  let dir: string;
  let peer: WlTestPeer;
  let weston: Weston;
  let guest: LinuxConsole;
  let vmmPid: number;
  let baselineFds: number;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-linux-wl-'));
    const fixture = linuxFixture();
    const initramfs = initramfsWith(fixture.initramfs, { '/bin/wltest': buildWltest(dir) }, path.join(dir, 'initramfs.cpio'));
    peer = new WlTestPeer(dir);
    weston = await startHeadlessWeston('vmm-linux-wl-weston-');
    const sockets = { '': weston.socket, peer: peer.path };
    guest = await LinuxConsole.boot({
      fixture: { vmlinux: fixture.vmlinux, initramfs }, cmdline, args: ['--plugin', `virtio-wl=${JSON.stringify({ sockets })}`],
    });
    vmmPid = guest.guest.child.pid!;
    baselineFds = fdCount(vmmPid);
  }, LINUX_BOOT_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await guest?.stop();
    peer?.close();
    await weston?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the driver probed: /dev/wl0, TRANS_FLAGS and SEND_DONTWAIT negotiated, EVENT_IDX as asked', async () => {
    const dev = await guest.run('ls -l /dev/wl0');
    if (dev.status !== 0) throw new Error(`the guest has no /dev/wl0: is CONFIG_VIRTIO_WL=y in the fixture kernel (guest/linux/config.fragment)?\n${dev.output}`);
    expect(dev.output).toMatch(/^crw-rw-rw- .* 10, +\d+ .*\/dev\/wl0$/m);
    const bits = (await guest.ok('cat /sys/bus/virtio/devices/virtio*/features')).trim();
    expect(bits[VIRTIO_WL_F_TRANS_FLAGS]).toBe('1');
    expect(bits[VIRTIO_WL_F_SEND_DONTWAIT]).toBe('1');
    expect(bits[VIRTIO_RING_F_EVENT_IDX]).toBe(eventIdx ? '1' : '0');
  });

  for (const name of ['ioctls', 'recv-wait', 'send-dontwait', 'fds', 'shm', 'poll', 'hostile']) {
    test(`wltest ${name}`, async () => {
      const r = await guest.run(`wltest ${name}`, CASE_TIMEOUT_MS);
      expectPassed(name, r.output, r.status);
      expect(peer.problems).toEqual([]);
    }, CASE_TIMEOUT_MS + 10_000);
  }

  test('wltest wayland: a get_registry + sync round trip to host weston lists what host wayland-info lists', async () => {
    const r = await guest.run('wltest wayland', CASE_TIMEOUT_MS);
    expectPassed('wayland', r.output, r.status);
    const inGuest = r.output.split('\n').filter((l) => l.startsWith('global ')).map((l) => l.slice('global '.length)).sort();
    expect(inGuest).toEqual(hostGlobals(weston.socket));
  }, CASE_TIMEOUT_MS + 10_000);

  test('after everything is closed: vmm holds as many fds as before, the host peer no connection, the kernel no oops', async () => {
    await until(`vmm's fds back at ${baselineFds}`, () => fdCount(vmmPid) === baselineFds, 20_000).catch(() => undefined);
    expect(fdCount(vmmPid)).toBe(baselineFds);
    expect(peer.openConnections).toBe(0);
    expect(guest.output()).not.toMatch(/Oops|BUG:|Call Trace|general protection|Kernel panic/);
    // the guest is still fine
    expect(await guest.ok('echo alive')).toBe('alive\n');
  });
});
