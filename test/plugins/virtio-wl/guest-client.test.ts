/**
 * A real guest driver: the bare-metal test guest guest/build/wl-client.elf (guest/lib/virtio.c,
 * guest/lib/virtio_wl.c) probes the virtio-wl device from its command line, sets up the queues
 * itself, connects through vmm to weston running headless on the host, sends
 * wl_display.get_registry + sync, and prints the globals it gets back on serial.
 * Needs Debian's `weston`.
 */
import * as path from 'path';
import type { Plugin } from '../../../plugin-api';
import wlPlugin from '../../../plugins/virtio-wl/index';
import { ROOT, startGuest } from '../../helpers/guest-run';
import { MiB } from './driver';
import { startHeadlessWeston, type Weston } from './weston-fixture';

export const WL_CLIENT_GUEST = path.join(ROOT, 'guest', 'build', 'wl-client.elf');


describe('bare-metal virtio-wl guest against weston (headless)', () => {
  let weston: Weston | undefined;

  afterAll(async () => {
    await weston?.stop();
  });

  // The guest library negotiates EVENT_IDX unless told `event_idx=0`, and kicks only when the
  // device's avail_event asks for it, as Linux does: both ways must work.
  test.each([['negotiated', 'on', ''], ['refused', 'off', 'event_idx=0']])("the guest's own driver (EVENT_IDX %s) gets weston's globals (wl_compositor, wl_shm) and the sync callback", async (_mode, state, cmdline) => {
    weston ??= await startHeadlessWeston('vmm-wl-guest-');
    const socket = weston.socket;

    const wl: Plugin = { name: 'virtio-wl', apply: (vmm) => wlPlugin.apply(vmm, { sockets: { '': socket } }) };
    const run = startGuest({ kernel: WL_CLIENT_GUEST, memory: 64 * MiB, cmdline }, [wl]);
    const timer = setTimeout(() => { void run.vm.stop(); }, 90_000);
    const exit = await run.exit;
    clearTimeout(timer);
    const out = run.output();
    expect({ reason: exit.reason, out }).toEqual({ reason: 'poweroff', out: expect.stringContaining('wl: done') });
    expect(out).toContain(`wl: event_idx ${state}\n`);
    expect(out).toMatch(/^wl: global wl_compositor v\d+$/m);
    expect(out).toMatch(/^wl: global wl_shm v\d+$/m);
    // Every global comes before the callback, as the compositor sends them.
    expect(out.lastIndexOf('wl: global')).toBeLessThan(out.indexOf('wl: done'));
    expect(exit.exitCode).toBe(0);
  }, 120_000);
});
