import createDebug from 'debug';
import type { VirtioActivation, VirtioDevice, VirtioTransport, WorkerDeviceHandler } from '../../../plugin-api';
import * as C from '../../../core/virtio/constants';
import { createDevice, type TransportMessage } from '../../../core/virtio/mmio-registers';
import { MmioTransport } from '../../../core/virtio/mmio-transport';
import { MockQueue } from '../../../core/virtio/testing/mock-queue';

class FakeDevice implements VirtioDevice {
  deviceType = C.VIRTIO_ID_NET;
  features = (1n << 5n) | (1n << 16n);
  queueMaxSizes = [16, 8];
  config = Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0);
  transport!: VirtioTransport;
  activations: VirtioActivation[] = [];
  notifies: number[] = [];
  resets = 0;
  configWrites: [number, number[]][] = [];
  throwOnNotify = false;
  attach(t: VirtioTransport) { this.transport = t; }
  activate(a: VirtioActivation) { this.activations.push(a); }
  queueNotify(i: number) { if (this.throwOnNotify) throw new Error('boom'); this.notifies.push(i); }
  reset() { this.resets++; }
  writeConfig(offset: number, data: Uint8Array) { this.configWrites.push([offset, Array.from(data)]); }
}

/** `deferred`: messages wait in `queued` until flush(), as when the main thread is busy. */
function setup(deferred = false) {
  const device = new FakeDevice();
  const mock = new MockQueue(16);
  let interrupts = 0;
  const transport = new MmioTransport(device, 'test-net', { memory: () => mock.memory, interrupt: () => { interrupts++; } });
  device.attach(transport);
  const messages: TransportMessage[] = [];
  const queued: TransportMessage[] = [];
  const flush = () => { for (const m of queued.splice(0)) transport.onMessage(m); };
  const bus = transport.busDevice(0xd000_0000);
  const regs: WorkerDeviceHandler = createDevice({
    vcpu: 0, options: bus.worker.options, shared: bus.worker.shared, memory: mock.memory,
    irq: { set: () => undefined, pulse: () => undefined }, log: createDebug('test'),
    postToMain: (m) => {
      messages.push(m as TransportMessage);
      if (deferred) queued.push(m as TransportMessage);
      else transport.onMessage(m as TransportMessage);
    },
  });
  const rd = (o: number, size = 4) => regs.read!(o, size) as number;
  const wr = (o: number, v: number, size = 4) => regs.write!(o, size, v);
  return { device, mock, transport, regs, rd, wr, messages, flush, interrupts: () => interrupts };
}

/** The Linux driver's probe sequence up to FEATURES_OK (virtio 1.2 §3.1.1). */
function negotiate(t: ReturnType<typeof setup>, featuresLo = 1 << 5, featuresHi = 1) {
  t.wr(C.VIRTIO_MMIO_STATUS, 0);
  t.wr(C.VIRTIO_MMIO_STATUS, C.VIRTIO_CONFIG_S_ACKNOWLEDGE);
  t.wr(C.VIRTIO_MMIO_STATUS, C.VIRTIO_CONFIG_S_ACKNOWLEDGE | C.VIRTIO_CONFIG_S_DRIVER);
  t.wr(C.VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  t.wr(C.VIRTIO_MMIO_DRIVER_FEATURES, featuresHi);
  t.wr(C.VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  t.wr(C.VIRTIO_MMIO_DRIVER_FEATURES, featuresLo);
  t.wr(C.VIRTIO_MMIO_STATUS, 0b1011);
  return t.rd(C.VIRTIO_MMIO_STATUS);
}

function setupQueue(t: ReturnType<typeof setup>, q: number, size = 16) {
  const c = t.mock.config;
  t.wr(C.VIRTIO_MMIO_QUEUE_SEL, q);
  t.wr(C.VIRTIO_MMIO_QUEUE_NUM, size);
  t.wr(C.VIRTIO_MMIO_QUEUE_DESC_LOW, c.descTable + q * 0x10000);
  t.wr(C.VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
  t.wr(C.VIRTIO_MMIO_QUEUE_AVAIL_LOW, c.availRing + q * 0x10000);
  t.wr(C.VIRTIO_MMIO_QUEUE_USED_LOW, c.usedRing + q * 0x10000);
  t.wr(C.VIRTIO_MMIO_QUEUE_READY, 1);
}

/** Negotiation, queue 0 and DRIVER_OK: a live device; returns its queue 0 when it activated. */
function driverOk(t: ReturnType<typeof setup>) {
  negotiate(t);
  setupQueue(t, 0);
  t.wr(C.VIRTIO_MMIO_STATUS, 0b1111);
  return t.device.activations[0]?.queues[0];
}

describe('virtio-mmio register file', () => {
  test('identification registers', () => {
    const t = setup();
    expect(t.rd(C.VIRTIO_MMIO_MAGIC_VALUE)).toBe(0x74726976);
    expect(t.rd(C.VIRTIO_MMIO_VERSION)).toBe(2);
    expect(t.rd(C.VIRTIO_MMIO_DEVICE_ID)).toBe(1);
    expect(t.rd(C.VIRTIO_MMIO_VENDOR_ID)).toBe(C.VMM_VIRTIO_VENDOR_ID);
    // "VMM\0" in the register's little-endian bytes.
    expect(Buffer.from(Uint32Array.of(C.VMM_VIRTIO_VENDOR_ID).buffer).toString('latin1')).toBe('VMM\0');
  });

  test('a device sets its own vendor id (all 32 bits); a value that is not one is refused by name', () => {
    const read = (vendorId: number) => {
      const device = Object.assign(new FakeDevice(), { vendorId });
      const transport = new MmioTransport(device, 'vendor-test', { memory: () => new MockQueue(16).memory, interrupt: () => undefined });
      const bus = transport.busDevice(0xd000_0000);
      const regs = createDevice({
        vcpu: 0, options: bus.worker.options, shared: bus.worker.shared, memory: new MockQueue(16).memory,
        irq: { set: () => undefined, pulse: () => undefined }, log: createDebug('test'), postToMain: () => undefined,
      });
      return regs.read!(C.VIRTIO_MMIO_VENDOR_ID, 4);
    };
    expect(read(0x554d4551)).toBe(0x554d4551);
    expect(read(0xffffffff)).toBe(0xffffffff);
    expect(read(0)).toBe(0);
    for (const bad of [-1, 0x1_0000_0000, 1.5, NaN]) {
      expect(() => read(bad)).toThrow(`virtio device 'vendor-test': vendorId must be a 32-bit unsigned number; got ${bad}`);
    }
  });

  test('device features are offered in 32-bit halves, with the transport features', () => {
    const t = setup();
    t.wr(C.VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    expect(t.rd(C.VIRTIO_MMIO_DEVICE_FEATURES)).toBe((1 << 5) | (1 << 16) | (1 << 28) | (1 << 29));
    t.wr(C.VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    expect(t.rd(C.VIRTIO_MMIO_DEVICE_FEATURES)).toBe(1);
    t.wr(C.VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    expect(t.rd(C.VIRTIO_MMIO_DEVICE_FEATURES)).toBe(0);
  });

  test('queue max sizes; a missing queue reads 0', () => {
    const t = setup();
    t.wr(C.VIRTIO_MMIO_QUEUE_SEL, 0);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(16);
    t.wr(C.VIRTIO_MMIO_QUEUE_SEL, 1);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(8);
    t.wr(C.VIRTIO_MMIO_QUEUE_SEL, 2);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(0);
    t.wr(C.VIRTIO_MMIO_QUEUE_SEL, -1);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(0);
  });

  test('config space reads at any width, little-endian; generation changes on update', () => {
    const t = setup();
    expect(t.rd(0x100, 1)).toBe(0x52);
    expect(t.rd(0x100, 2)).toBe(0x5452);
    expect(t.rd(0x100, 4)).toBe(0x12005452);
    expect(t.regs.read!(0x100, 8)).toBe(0x0001_5634_1200_5452n);
    expect(t.rd(0x106, 2)).toBe(1);
    expect(t.rd(0x1f0, 4)).toBe(0); // past the end of the config space
    const gen = t.rd(C.VIRTIO_MMIO_CONFIG_GENERATION);
    t.device.transport.updateConfig(6, Uint8Array.of(0, 0));
    expect(t.rd(0x106, 2)).toBe(0);
    expect(t.rd(C.VIRTIO_MMIO_CONFIG_GENERATION)).toBe(gen + 1);
    expect(t.interrupts()).toBe(0); // not before DRIVER_OK
  });

  test('config writes reach the device', () => {
    const t = setup();
    t.wr(0x102, 0xbeef, 2);
    expect(t.device.configWrites).toEqual([[2, [0xef, 0xbe]]]);
    expect(t.rd(0x102, 2)).toBe(0xbeef);
    t.wr(0x1ff, 1, 4); // beyond the space: ignored
    expect(t.device.configWrites.length).toBe(1);
  });

  test('registers need 32-bit aligned accesses', () => {
    const t = setup();
    expect(t.rd(C.VIRTIO_MMIO_MAGIC_VALUE, 2)).toBe(0);
    expect(t.rd(C.VIRTIO_MMIO_MAGIC_VALUE + 1, 4)).toBe(0);
    t.wr(C.VIRTIO_MMIO_STATUS, 1, 1);
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(0);
  });
});

describe('device status state machine (virtio 1.2 §2.1, §3.1.1)', () => {
  test('the normal sequence reaches DRIVER_OK and activates with the queues', () => {
    const t = setup();
    expect(negotiate(t)).toBe(0b1011);
    setupQueue(t, 0);
    setupQueue(t, 1, 8);
    t.wr(C.VIRTIO_MMIO_STATUS, 0b1111);
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(0b1111);
    expect(t.device.activations.length).toBe(1);
    const a = t.device.activations[0];
    expect(a.features).toBe((1n << 32n) | (1n << 5n));
    expect(a.queues.map((q) => q?.size)).toEqual([16, 8]);
    // Buffers added before DRIVER_OK are picked up: every queue is notified once.
    expect(t.device.notifies).toEqual([0, 1]);
    t.transport.queueNotify(1);
    expect(t.device.notifies).toEqual([0, 1, 1]);
  });

  test.each([
    ['DRIVER before ACKNOWLEDGE', [C.VIRTIO_CONFIG_S_DRIVER], 0],
    ['FEATURES_OK before DRIVER', [1, 1 | 8], 1],
    ['DRIVER_OK before FEATURES_OK', [1, 3, 3 | 4], 3],
    ['two bits at once', [1 | 2], 0],
    ['dropping a bit', [1, 3, 1], 3],
    ['the device-owned NEEDS_RESET bit alone', [0x40], 0],
  ])('%s is ignored', (_name, writes, expected) => {
    const t = setup();
    for (const w of writes) t.wr(C.VIRTIO_MMIO_STATUS, w);
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(expected);
    expect(t.device.activations.length).toBe(0);
  });

  test('FAILED can be set at any time', () => {
    const t = setup();
    t.wr(C.VIRTIO_MMIO_STATUS, 1);
    t.wr(C.VIRTIO_MMIO_STATUS, 1 | 0x80);
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(0x81);
  });

  test('FEATURES_OK is refused for features not offered or without VERSION_1', () => {
    expect(negotiate(setup(), (1 << 5) | (1 << 7))).toBe(3);
    expect(negotiate(setup(), 1 << 5, 0)).toBe(3);
    expect(negotiate(setup(), 1 << 5, 1 | 2)).toBe(3);
  });

  test('driver features are only taken between DRIVER and FEATURES_OK', () => {
    const t = setup();
    t.wr(C.VIRTIO_MMIO_DRIVER_FEATURES, 1 << 5);
    expect(negotiate(t, 0, 1)).toBe(0b1011);
    t.wr(C.VIRTIO_MMIO_DRIVER_FEATURES, 1 << 16);
    setupQueue(t, 0);
    t.wr(C.VIRTIO_MMIO_STATUS, 0b1111);
    expect(t.device.activations[0].features).toBe(1n << 32n);
  });

  test('queue registers are ignored outside FEATURES_OK..DRIVER_OK, and sizes above the max', () => {
    const t = setup();
    t.wr(C.VIRTIO_MMIO_QUEUE_SEL, 0);
    t.wr(C.VIRTIO_MMIO_QUEUE_READY, 1);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_READY)).toBe(0);
    negotiate(t);
    t.wr(C.VIRTIO_MMIO_QUEUE_NUM, 32);
    setupQueue(t, 0);
    t.wr(C.VIRTIO_MMIO_STATUS, 0b1111);
    t.wr(C.VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_DESC_LOW)).toBe(t.mock.config.descTable);
  });

  test('a bad queue configuration at DRIVER_OK sets DEVICE_NEEDS_RESET and raises a config interrupt', () => {
    const t = setup();
    negotiate(t);
    setupQueue(t, 0, 12); // not a power of 2
    t.wr(C.VIRTIO_MMIO_STATUS, 0b1111);
    expect(t.device.activations.length).toBe(0);
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(0b1111 | 0x40);
    expect(t.rd(C.VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(C.VIRTIO_MMIO_INT_CONFIG);
    expect(t.interrupts()).toBe(1);
    // The driver echoing NEEDS_RESET back is not a transition; a reset clears it.
    t.wr(C.VIRTIO_MMIO_STATUS, 0b1111 | 0x40);
    t.wr(C.VIRTIO_MMIO_STATUS, 0);
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(0);
  });

  test('reset clears driver state, resets the device and kills the old queues', () => {
    const t = setup();
    const q = driverOk(t)!;
    t.wr(C.VIRTIO_MMIO_STATUS, 0);
    expect(t.device.resets).toBe(2); // one from negotiate()'s initial reset
    expect(t.rd(C.VIRTIO_MMIO_STATUS)).toBe(0);
    t.wr(C.VIRTIO_MMIO_QUEUE_SEL, 0);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_READY)).toBe(0);
    expect(t.rd(C.VIRTIO_MMIO_QUEUE_DESC_LOW)).toBe(0);
    t.mock.setDesc(0, { addr: t.mock.dataStart, len: 4, flags: C.VIRTQ_DESC_F_WRITE });
    t.mock.addAvail(0);
    expect(q.pop()).toBeNull();
    const before = t.device.notifies.length;
    t.transport.queueNotify(0);
    expect(t.device.notifies.length).toBe(before);
  });

  test('a DRIVER_OK the main thread sees only after a reset is stale: no activation, one reset', () => {
    const t = setup(true);
    negotiate(t);
    setupQueue(t, 0);
    t.wr(C.VIRTIO_MMIO_STATUS, 0b1111);
    t.wr(C.VIRTIO_MMIO_STATUS, 0);
    t.flush();
    expect(t.device.activations.length).toBe(0);
    expect(t.device.resets).toBe(1);
  });

  test('a reset and a new DRIVER_OK seen together: the device resets, then activates once', () => {
    const t = setup(true);
    driverOk(t);
    t.flush();
    expect(t.device.activations.length).toBe(1);
    driverOk(t);
    t.flush();
    expect(t.device.resets).toBe(2);
    expect(t.device.activations.length).toBe(2);
  });

  test('interrupt status and acknowledge', () => {
    const t = setup();
    const q = driverOk(t)!;
    t.mock.setDesc(0, { addr: t.mock.dataStart, len: 4, flags: C.VIRTQ_DESC_F_WRITE });
    t.mock.addAvail(0);
    q.pushUsed(q.pop()!, 4);
    q.notify();
    expect(t.interrupts()).toBe(1);
    expect(t.rd(C.VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(1);
    t.device.transport.updateConfig(0, Uint8Array.of(1));
    expect(t.rd(C.VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(3);
    t.wr(C.VIRTIO_MMIO_INTERRUPT_ACK, 1);
    expect(t.rd(C.VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(2);
    t.wr(C.VIRTIO_MMIO_INTERRUPT_ACK, 2);
    expect(t.rd(C.VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(0);
  });

  test('a notify written without the ioeventfd (other width or value) still reaches the device', () => {
    const t = setup();
    driverOk(t);
    t.wr(C.VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    expect(t.device.notifies).toEqual([0, 0]);
    t.wr(C.VIRTIO_MMIO_QUEUE_NOTIFY, 7); // no such queue: logged
    expect(t.device.notifies).toEqual([0, 0]);
  });

  test('a device that throws is put in NEEDS_RESET, not the VMM', () => {
    const t = setup();
    t.device.throwOnNotify = true;
    driverOk(t);
    expect(t.rd(C.VIRTIO_MMIO_STATUS) & 0x40).toBe(0x40);
  });

  test('a guest resetting in a loop while the main thread is busy costs one message and one device reset', () => {
    const t = setup(true);
    for (let i = 0; i < 1000; i++) t.wr(C.VIRTIO_MMIO_STATUS, 0);
    expect(t.messages.length).toBe(1);
    t.flush();
    expect(t.device.resets).toBe(1);
    // The flag is cleared before acting: the next reset is news again.
    t.wr(C.VIRTIO_MMIO_STATUS, 0);
    expect(t.messages.length).toBe(2);
  });

  test('config writes are coalesced into one message covering every written byte', () => {
    const t = setup(true);
    for (let i = 0; i < 1000; i++) t.wr(0x104, i & 0xff, 1);
    t.wr(0x101, 0xaa, 1);
    expect(t.messages.length).toBe(1);
    t.flush();
    expect(t.device.configWrites).toEqual([[1, [0xaa, 0x00, 0x12, (1000 - 1) & 0xff]]]);
  });

  test('config writes of a driver that then reset are dropped', () => {
    const t = setup(true);
    t.wr(0x104, 7, 1);
    t.wr(C.VIRTIO_MMIO_STATUS, 0);
    t.flush();
    expect(t.device.configWrites).toEqual([]);
  });

  test('notifies that miss the ioeventfd: at most one message per queue waits for the main thread', () => {
    const t = setup(true);
    driverOk(t);
    t.flush();
    const before = t.messages.length;
    for (let i = 0; i < 1000; i++) { t.wr(C.VIRTIO_MMIO_QUEUE_NOTIFY, 0); t.wr(C.VIRTIO_MMIO_QUEUE_NOTIFY, 1); t.wr(C.VIRTIO_MMIO_QUEUE_NOTIFY, 99); }
    expect(t.messages.length - before).toBe(2);
    const notifies = t.device.notifies.length;
    t.flush();
    expect(t.device.notifies.length - notifies).toBe(1); // queue 1 is not enabled
    t.wr(C.VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    expect(t.messages.length - before).toBe(3);
  });

  test('a forged message for a queue that does not exist is ignored', () => {
    const t = setup();
    driverOk(t);
    const n = t.device.notifies.length;
    t.transport.onMessage({ type: 'notify', queue: 1e9 });
    t.transport.onMessage({ type: 'notify', queue: -1 });
    expect(t.device.notifies.length).toBe(n);
  });

  test('shared memory registers read all ones for a missing region', () => {
    const t = setup();
    t.wr(C.VIRTIO_MMIO_SHM_SEL, 0);
    expect(t.rd(C.VIRTIO_MMIO_SHM_LEN_LOW)).toBe(0xffffffff);
    expect(t.rd(C.VIRTIO_MMIO_SHM_BASE_HIGH)).toBe(0xffffffff);
  });
});
