/**
 * virtio-net in a real VM: the probe guest plays the driver's register dance over MMIO (the
 * register file on the vCPU thread), notifies through the ioeventfds, and the test checks the
 * frames that went through the TAP in a network namespace and came back into guest memory.
 */
import type { Plugin, Vmm } from '../../../plugin-api';
import { MMIO_HOLE_START } from '../../../core/boot/layout';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../core/virtio/constants';
import virtioNet from '../../../plugins/virtio-net/index';
import { openFdCount, PROBE_GUEST, startGuest } from '../../helpers/guest-run';
import { arpRequest, createNamespace, deleteNamespace, GUEST_IP, HOST_IP, moveTap, parseFrame } from './net-fixture';
import { until } from '../../helpers/wait';

const B = MMIO_HOLE_START; // the first virtio device gets the first MMIO window
const RX = { desc: 0x800000, avail: 0x801000, used: 0x802000 };
const TX = { desc: 0x810000, avail: 0x811000, used: 0x812000 };
const RX_BUF = 0x820000;
const TX_BUF = 0x830000;
const MAC = Uint8Array.of(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
const TAP = `vmmv${process.pid % 100000}`;
const hex = (n: number) => `0x${n.toString(16)}`;

function script(): string {
  const w = (off: number, v: number) => `wr32:${hex(B + off)}:${hex(v)}`;
  const queue = (i: number, q: typeof RX) => [w(0x30, i), w(0x38, 16), w(0x80, q.desc), w(0x84, 0), w(0x90, q.avail), w(0x94, 0), w(0xa0, q.used), w(0xa4, 0), w(0x44, 1)];
  return [
    `rd32:${hex(B)}`, `rd32:${hex(B + 8)}`,
    w(0x70, 0), w(0x70, 1), w(0x70, 3),
    w(0x24, 1), w(0x20, 1), w(0x24, 0), w(0x20, (1 << 5) | (1 << 15)),
    w(0x70, 0xb), `rd32:${hex(B + 0x70)}`,
    ...queue(0, RX), ...queue(1, TX),
    w(0x70, 0xf), `rd32:${hex(B + 0x70)}`,
    w(0x50, 0), w(0x50, 1),
    'wait',
  ].join(' ');
}

describe('virtio-net in a VM (probe guest as the driver)', () => {
  beforeAll(() => createNamespace());
  afterAll(() => deleteNamespace());

  test('register dance, notify, frames through the TAP into the used ring, everything released', async () => {
    const fdsBefore = openFdCount();
    let cmdline: string[] = [];
    const net: Plugin = { name: 'virtio-net', apply: (vmm) => virtioNet.apply(vmm, { tap: TAP, mac: '02:11:22:33:44:55' }) };
    const driver: Plugin = {
      name: 'test-driver',
      apply(vmm: Vmm) {
        vmm.hooks.createDevices.tapPromise('test-driver', async () => {
          moveTap(TAP);
          const m = vmm.memory;
          // rx: 4 writable 2 KiB buffers
          for (let i = 0; i < 4; i++) {
            m.writeU64(RX.desc + 16 * i, BigInt(RX_BUF + 2048 * i)); m.writeU32(RX.desc + 16 * i + 8, 2048); m.writeU16(RX.desc + 16 * i + 12, VIRTQ_DESC_F_WRITE);
            m.writeU16(RX.avail + 4 + 2 * i, i);
          }
          m.writeU16(RX.avail + 2, 4);
          // tx: header + ARP request in two descriptors
          const frame = arpRequest(MAC, GUEST_IP, HOST_IP);
          m.write(TX_BUF + 64, frame);
          m.writeU64(TX.desc, BigInt(TX_BUF)); m.writeU32(TX.desc + 8, 12); m.writeU16(TX.desc + 12, VIRTQ_DESC_F_NEXT); m.writeU16(TX.desc + 14, 1);
          m.writeU64(TX.desc + 16, BigInt(TX_BUF + 64)); m.writeU32(TX.desc + 24, frame.length);
          m.writeU16(TX.avail + 4, 0);
          m.writeU16(TX.avail + 2, 1);
          vmm.hooks.kernelCmdline.tap('test-driver', (list) => { cmdline = list; return list; });
        });
      },
    };
    const run = startGuest({ kernel: PROBE_GUEST, cmdline: script(), cpuidHide: [] }, [net, driver]);
    try {
      const out = await run.waitFor(/rd32 0xd0000070 = 0xf\b/, 60000);
      expect(out).toContain(`rd32 ${hex(B)} = 0x74726976`);
      expect(out).toContain(`rd32 ${hex(B + 8)} = 0x1`);
      expect(out).toContain(`rd32 ${hex(B + 0x70)} = 0xb`);
      expect(cmdline.join(' ')).toMatch(new RegExp(`virtio_mmio\\.device=4K@${hex(B)}:\\d+`));
      const m = run.vm.memory;
      await until('the tx chain in the used ring', () => m.readU16(TX.used + 2) === 1, 10000);
      const reply = await until('an ARP reply in an rx buffer', () => {
        const n = m.readU16(RX.used + 2);
        for (let k = 0; k < n; k++) {
          const id = m.readU32(RX.used + 4 + 8 * k);
          const len = m.readU32(RX.used + 8 + 8 * k);
          const bytes = m.read(RX_BUF + 2048 * id, len);
          const f = parseFrame(bytes.subarray(12));
          if (f.arp?.op === 2) return { f, numBuffers: bytes[10] | (bytes[11] << 8) };
        }
        return undefined;
      }, 10000);
      expect(reply.f.arp!.senderIp).toBe(HOST_IP);
      expect(reply.f.dst).toEqual(Array.from(MAC));
      expect(reply.numBuffers).toBe(1);
      // The register window is listed with the VM's devices.
      expect(run.vm.devices.some((d) => d.base === B && d.length === 0x1000)).toBe(true);
    } finally {
      await run.vm.stop();
      await run.exit;
    }
    expect(openFdCount()).toBeLessThanOrEqual(fdsBefore);
  });
});
