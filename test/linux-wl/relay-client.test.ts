/**
 * The guest relay in client mode (guest/linux/wl-relay): Debian's unmodified Wayland clients in a
 * Linux guest (the 'wayland' initramfs profile) shown by a headless weston on the host, through
 * wl-relay, vmm's virtio-wl device (unnamed socket → weston) and real KVM. One guest for the file.
 *
 * What is checked where it can be seen: globals as host wayland-info lists them (filtered by the
 * relay's rule: interfaces it knows, `wl-relay interfaces`, versions capped to its tables); frames
 * as commits weston receives (WAYLAND_DEBUG=server) and as pixels in the shm weston was given
 * (vmm's virtwl_alloc memfds); ten clients at once, a client killed mid-stream and hostile clients
 * closed alone; the relay's and vmm's fd counts back at their baselines.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LinuxConsole } from '../helpers/linux-console';
import { linuxFixture, LINUX_BOOT_TIMEOUT_MS, ROOT } from '../helpers/linux-guest';
import { sleep, until } from '../helpers/wait';
import { initramfsWith } from './guest-programs';
import { distinctWords, vmmPools } from './relay-host';
import { hostGlobals, parseGlobals, startHeadlessWeston, type Weston } from '../plugins/virtio-wl/weston-fixture';

const GARBAGE_SOURCE = path.join(ROOT, 'guest', 'linux', 'wl-relay', 'tests', 'wl-garbage.c');
/** The guest kernel runs emulated on CI hosts: a wayland-info takes seconds there. */
const STEP_TIMEOUT_MS = 180_000;
/** weston-simple-shm's buffers: 250×250 XRGB8888. */
const SIMPLE_SHM_BYTES = 250 * 250 * 4;
const FRAMES = 60;

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

describe('wl-relay client mode in a Linux guest, host weston headless', () => {
  let dir: string;
  let weston: Weston;
  let guest: LinuxConsole;
  let vmmPid: number;
  let vmmBaseline: number;
  let relayBaseline: number;
  let shmPid = 0;
  const relayFds = async () => Number((await guest.ok('ls /proc/$(pidof wl-relay)/fd | wc -l')).trim());

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-relay-client-'));
    const garbage = path.join(dir, 'wl-garbage');
    const cc = spawnSync('gcc', ['-static', '-O2', '-s', '-Wall', '-Wextra', '-Werror', '-o', garbage, GARBAGE_SOURCE], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc could not build ${GARBAGE_SOURCE}: ${cc.stderr}`);
    const fixture = linuxFixture('wayland');
    const initramfs = initramfsWith(fixture.initramfs, { '/bin/wl-garbage': garbage }, path.join(dir, 'initramfs.cpio'));
    weston = await startHeadlessWeston('vmm-relay-weston-', { protocolLog: true });
    guest = await LinuxConsole.boot({
      fixture: { vmlinux: fixture.vmlinux, initramfs }, memory: '256M',
      args: ['--plugin', `virtio-wl=${JSON.stringify({ sockets: { '': weston.socket } })}`],
    });
    vmmPid = guest.guest.child.pid!;
    const started = await guest.ok(
      'export XDG_RUNTIME_DIR=/run/wl; mkdir -p -m 700 $XDG_RUNTIME_DIR; (wl-relay client -v 2>/tmp/relay.log &); ' +
      'i=0; while ! grep -q listening /tmp/relay.log && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/relay.log', STEP_TIMEOUT_MS);
    expect(started).toContain('wl-relay: listening on /run/wl/wayland-0');
    relayBaseline = await relayFds();
    vmmBaseline = fdCount(vmmPid);
  }, LINUX_BOOT_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    await guest?.stop();
    await weston?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('wayland-info in the guest lists the globals host wayland-info lists, filtered by the relay\'s rule', async () => {
    const known = new Map((await guest.ok('wl-relay interfaces')).trim().split('\n').map((l) => {
      const [name, version] = l.split(' ');
      return [name, Number(version)] as const;
    }));
    // The rule: a global is shown only if the relay knows its interface, at most at the table's version.
    const expected = hostGlobals(weston.socket).flatMap((g) => {
      const [name, version] = g.split(' ');
      return known.has(name) ? [`${name} ${Math.min(Number(version), known.get(name)!)}`] : [];
    }).sort();
    const inGuest = parseGlobals(await guest.ok('wayland-info', STEP_TIMEOUT_MS));
    expect(inGuest).toEqual(expected);
    expect(inGuest.length).toBeGreaterThanOrEqual(10);
    expect(inGuest.map((g) => g.split(' ')[0])).not.toContain('zwp_linux_explicit_synchronization_v1');
  }, STEP_TIMEOUT_MS);

  test(`weston-simple-shm in the guest: ≥ ${FRAMES} commits reach host weston, with its pixels in the shm weston maps`, async () => {
    const before = weston.commits();
    shmPid = Number((await guest.ok('weston-simple-shm >/tmp/shm.log 2>&1 & echo $!')).trim());
    expect(shmPid).toBeGreaterThan(0);
    await until(`${FRAMES} commits at host weston (seen: ${weston.commits() - before})`, () => weston.commits() - before >= FRAMES, STEP_TIMEOUT_MS, 100);
    // simple-shm paints a moving pattern: many distinct pixel values, changing between frames.
    const pools = () => vmmPools(weston.pid).filter((b) => b.length >= SIMPLE_SHM_BYTES);
    const first = pools();
    expect(first.length).toBeGreaterThanOrEqual(1);
    expect(Math.max(...first.map((b) => distinctWords(b, SIMPLE_SHM_BYTES)))).toBeGreaterThan(100);
    await sleep(1000);
    const second = pools();
    const changed = first.some((b, i) => second[i] && !b.subarray(0, SIMPLE_SHM_BYTES).equals(second[i].subarray(0, SIMPLE_SHM_BYTES)));
    expect(changed).toBe(true);
  }, STEP_TIMEOUT_MS + 10_000);

  test('ten wayland-info at once while simple-shm runs: each lists every global', async () => {
    const expectedCount = parseGlobals(await guest.ok('wayland-info', STEP_TIMEOUT_MS)).length;
    const out = await guest.ok(
      'p=""; for i in 0 1 2 3 4 5 6 7 8 9; do wayland-info >/tmp/wi.$i 2>&1 & p="$p $!"; done; wait $p; ' +
      'for i in 0 1 2 3 4 5 6 7 8 9; do grep -c "interface:" /tmp/wi.$i; done', STEP_TIMEOUT_MS);
    expect(out.trim().split('\n').map(Number)).toEqual(Array(10).fill(expectedCount));
  }, STEP_TIMEOUT_MS);

  test('hostile clients (bad size, unknown object, oversize message) are disconnected alone; simple-shm keeps drawing', async () => {
    const out = await guest.ok('wl-garbage size && wl-garbage object && wl-garbage big', STEP_TIMEOUT_MS);
    expect(out).toBe('hung up\nhung up\nhung up\n');
    const log = await guest.ok('cat /tmp/relay.log');
    expect(log).toMatch(/wl-relay: client \d+: bad message size 6 /);
    expect(log).toMatch(/wl-relay: client \d+: request for unknown object 77/);
    expect(log).toMatch(/wl-relay: client \d+: bad message size 8192 /);
    const before = weston.commits();
    await until('simple-shm still committing', () => weston.commits() - before >= 10, 60_000, 100);
  }, STEP_TIMEOUT_MS);

  test('simple-shm killed mid-stream: the relay lives on, a new client works, fds of relay and vmm back at baseline', async () => {
    expect(shmPid).toBeGreaterThan(0);
    await guest.ok(`kill -9 ${shmPid}; wait ${shmPid} 2>/dev/null; true`);
    expect((await guest.ok('pidof wl-relay')).trim()).not.toBe('');
    expect(parseGlobals(await guest.ok('wayland-info', STEP_TIMEOUT_MS)).length).toBeGreaterThanOrEqual(10);
    let relayNow = -1;
    for (let i = 0; i < 20 && relayNow !== relayBaseline; i++) {
      relayNow = await relayFds();
      if (relayNow !== relayBaseline) await sleep(500);
    }
    expect(relayNow).toBe(relayBaseline);
    await until(`vmm's fds back at ${vmmBaseline}`, () => fdCount(vmmPid) === vmmBaseline, 30_000, 100).catch(() => undefined);
    expect(fdCount(vmmPid)).toBe(vmmBaseline);
    expect(guest.output()).not.toMatch(/Oops|BUG:|Call Trace|general protection|Kernel panic/);
  }, STEP_TIMEOUT_MS);
});
