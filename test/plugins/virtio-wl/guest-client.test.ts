/**
 * A real guest driver: the bare-metal test guest guest/build/wl-client.elf (guest/lib/virtio.c,
 * guest/lib/virtio_wl.c) probes the virtio-wl device from its command line, sets up the queues
 * itself, connects through vmm to weston running headless on the host, sends
 * wl_display.get_registry + sync, and prints the globals it gets back on serial.
 * Needs Debian's `weston`.
 */
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Plugin } from '../../../plugin-api';
import wlPlugin from '../../../plugins/virtio-wl/index';
import { ROOT, startGuest } from '../../helpers/guest-run';
import { MiB, sleep, tempDir, until } from './driver';

export const WL_CLIENT_GUEST = path.join(ROOT, 'guest', 'build', 'wl-client.elf');

const hasWeston = spawnSync('sh', ['-c', 'command -v weston'], { encoding: 'utf8' }).status === 0;
const maybe = hasWeston ? test : test.skip;

describe('bare-metal virtio-wl guest against weston (headless)', () => {
  let dir: string;
  let weston: ChildProcess | undefined;

  afterAll(async () => {
    if (weston && weston.exitCode === null) {
      weston.kill('SIGTERM');
      await new Promise((r) => weston!.once('exit', r));
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  maybe("the guest's own driver gets weston's globals (wl_compositor, wl_shm) and the sync callback", async () => {
    dir = tempDir('vmm-wl-guest-');
    fs.chmodSync(dir, 0o700);
    const socket = path.join(dir, 'wl-test');
    let log = '';
    weston = spawn('weston', ['--backend=headless-backend.so', '--socket=wl-test', '--idle-time=0'], {
      env: { ...process.env, XDG_RUNTIME_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir,
    });
    weston.stdout!.on('data', (c) => { log += c; });
    weston.stderr!.on('data', (c) => { log += c; });
    await until(() => (fs.existsSync(socket) ? true : undefined), `weston's socket (log: ${log})`, 20000);
    await sleep(200);

    const wl: Plugin = { name: 'virtio-wl', apply: (vmm) => wlPlugin.apply(vmm, { sockets: { '': socket } }) };
    const run = startGuest({ kernel: WL_CLIENT_GUEST, memory: 64 * MiB }, [wl]);
    const timer = setTimeout(() => { void run.vm.stop(); }, 90_000);
    const exit = await run.exit;
    clearTimeout(timer);
    const out = run.output();
    expect({ reason: exit.reason, out }).toEqual({ reason: 'poweroff', out: expect.stringContaining('wl: done') });
    expect(out).toMatch(/^wl: global wl_compositor v\d+$/m);
    expect(out).toMatch(/^wl: global wl_shm v\d+$/m);
    // Every global comes before the callback, as the compositor sends them.
    expect(out.lastIndexOf('wl: global')).toBeLessThan(out.indexOf('wl: done'));
    expect(exit.exitCode).toBe(0);
  }, 120_000);
});
