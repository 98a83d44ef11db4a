/**
 * virtio-net end to end without a Linux guest: this test is the driver. It writes descriptor
 * tables into guest memory (a GuestMemory fixture), and the device exchanges real frames with
 * the kernel of a network namespace through a real TAP.
 */
import createDebug from 'debug';
import { native } from '../../../native';
import { GuestMemory } from '../../../core/memory/guest-memory';
import { MockQueue } from '../../../core/virtio/testing/mock-queue';
import { VirtioNetDevice, offeredFeatures, tapOffloadsFor } from '../../../plugins/virtio-net/device';
import plugin, { defaultMac, parseOptions } from '../../../plugins/virtio-net/index';
import { openTap, type Tap } from '../../../plugins/virtio-net/tap';
import { TxPath } from '../../../plugins/virtio-net/tx';
import * as C from '../../../plugins/virtio-net/constants';
import {
  arpRequest, createNamespace, deleteNamespace, GUEST_IP, HOST_IP, icmpEcho, ip, moveTap, NS, udpBurstFromNamespace,
  udpEchoFromNamespace,
  type Parsed,
} from './net-fixture';
import { until } from '../../helpers/wait';
import { HDR, MockNetDriver, MRG_FEATURES } from './mock-driver';

const log = createDebug('vmm:virtio-net');
const GUEST_MAC = Uint8Array.of(0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc);
const TX_BUFS = 0x200000;

/** The mock driver, answering for GUEST_IP. */
class Driver extends MockNetDriver {
  respondAll(frames: Parsed[]): void {
    this.respond(frames, GUEST_MAC, GUEST_IP);
  }
}

const FEATURES = MRG_FEATURES;
const QSIZE = 16;

describe('virtio-net over a real TAP in a network namespace', () => {
  let tap: Tap;
  let device: VirtioNetDevice;
  let driver: Driver;

  beforeAll(() => {
    createNamespace();
    tap = openTap({ tap: `vmmt${process.pid % 100000}` });
    moveTap(tap.name);
    device = new VirtioNetDevice(tap, { mac: GUEST_MAC }, log);
    driver = new Driver(device, FEATURES);
  });

  afterAll(() => {
    device?.shutdown();
    deleteNamespace();
  });

  test('the TAP accepted a 12-byte header and the device offers what TUNSETOFFLOAD accepted', () => {
    expect(tap.name).toMatch(/^vmmt/);
    expect(device.features & (1n << BigInt(C.VIRTIO_NET_F_MRG_RXBUF))).not.toBe(0n);
    if (tap.offloads & C.TUN_F_CSUM) expect(device.features & (1n << BigInt(C.VIRTIO_NET_F_CSUM))).not.toBe(0n);
    expect(Array.from(device.config.subarray(0, 6))).toEqual(Array.from(GUEST_MAC));
    expect(device.config[6]).toBe(C.VIRTIO_NET_S_LINK_UP);
  });

  test('ARP: a request from the guest is answered by the namespace kernel', async () => {
    driver.postRx(8);
    driver.send(arpRequest(GUEST_MAC, GUEST_IP, HOST_IP));
    expect(driver.txq.usedIdx()).toBe(1);
    expect(driver.txq.used(0).len).toBe(0);
    const reply = await until('an ARP reply', () => driver.collect().find((f) => f.arp?.op === 2 && f.arp.senderIp === HOST_IP));
    expect(reply.dst).toEqual(Array.from(GUEST_MAC));
    expect(driver.interrupts).toBeGreaterThan(0);
  });

  test('ICMP: the guest pings the namespace and gets the echo reply', async () => {
    const hostMac = driver.frames.find((f) => f.arp?.op === 2)!.src;
    const payload = Uint8Array.from({ length: 56 }, (_, i) => i);
    driver.postRx(4);
    driver.send(icmpEcho(GUEST_MAC, Uint8Array.from(hostMac), GUEST_IP, HOST_IP, 8, 0x1234, 1, payload), { split: false });
    const reply = await until('an echo reply', () => driver.collect().find((f) => f.ipv4?.icmp?.type === 0 && f.ipv4.icmp.id === 0x1234));
    expect(Array.from(reply.ipv4!.icmp!.payload)).toEqual(Array.from(payload));
  });

  test('the namespace talks to the guest: frames arrive in rx buffers and the replies go out', async () => {
    driver.postRx(QSIZE);
    const timer = setInterval(() => {
      const frames = driver.collect();
      driver.respondAll(frames);
      if (frames.length > 0) driver.postRx(frames.length);
    }, 5);
    try {
      const result = await udpEchoFromNamespace(GUEST_IP, 7777, 'hello-guest');
      expect(result).toEqual({ code: 0, output: '' });
    } finally {
      clearInterval(timer);
    }
    expect(driver.frames.some((f) => f.ipv4?.udp?.dstPort === 7777)).toBe(true);
  });

  test('rx backpressure: with no buffers the TAP is left alone, and nothing is lost or duplicated', async () => {
    driver.collect();
    ip('-n', NS, 'neigh', 'replace', GUEST_IP, 'lladdr', '02:00:00:aa:bb:cc', 'dev', tap.name);
    const dropsBefore = device.rx.stats.dropped;
    const starvedBefore = device.rx.stats.starved;
    const COUNT = 60; // more than the 16 buffers of the queue
    expect((await udpBurstFromNamespace(GUEST_IP, 9999, COUNT)).code).toBe(0);
    await until('the device to run out of rx buffers', () => !device.rx.wantsTap);
    expect(device.rx.stats.starved).toBeGreaterThan(starvedBefore);
    const seqs: string[] = [];
    const take = () => {
      for (const f of driver.collect()) if (f.ipv4?.udp?.dstPort === 9999) seqs.push(Buffer.from(f.ipv4.udp.payload).toString());
    };
    await until('every datagram', () => {
      take();
      driver.postRx(4); // a slow driver: a few buffers at a time
      return seqs.length >= COUNT;
    }, 10000);
    expect(seqs).toEqual(Array.from({ length: COUNT }, (_, i) => `seq${String(i).padStart(3, '0')}`));
    expect(device.rx.stats.dropped).toBe(dropsBefore);
  });

  test('hostile tx chains are returned unsent; the device goes on', async () => {
    const before = driver.txq.usedIdx();
    // A header-only chain, then a chain pointing outside guest memory.
    driver.txq.setDesc(14, { addr: TX_BUFS, len: HDR });
    driver.txq.addAvail(14);
    driver.txq.setDesc(15, { addr: 0x7000_0000, len: 100 });
    driver.txq.addAvail(15);
    driver.device.queueNotify(C.TX_QUEUE);
    expect(driver.txq.usedIdx()).toBe((before + 2) & 0xffff);
    expect(driver.txq.used(before).len).toBe(0);
    expect(driver.txq.used(before + 1)).toEqual({ id: 15, len: 0 });
    driver.postRx(4);
    driver.send(arpRequest(GUEST_MAC, GUEST_IP, HOST_IP));
    await until('another ARP reply', () => driver.collect().find((f) => f.arp?.op === 2));
  });

  test('reset stops both paths; the TAP is not watched', () => {
    device.reset();
    expect(device.rx.wantsTap).toBe(false);
    driver.device.queueNotify(C.TX_QUEUE);
  });
});

describe('tx backpressure (EAGAIN) over a pipe', () => {
  test('a chain the fd refuses is kept and sent once when it is writable again', async () => {
    const [r, w] = native.pipe();
    const memory = new GuestMemory([{ guestAddress: 0, size: 1 << 20, buffer: new ArrayBuffer(1 << 20) }]);
    const txq = new MockQueue(8, 0, 0x1000, memory);
    const q = txq.create({}, undefined, 1);
    let watchChanges = 0;
    const tx = new TxPath(w, log, () => { watchChanges++; });
    tx.start(q);
    // Fill the pipe.
    const chunk = Buffer.alloc(65536, 1);
    while (native.write(w, chunk) > 0) { /* until EAGAIN */ }
    const frame = Buffer.alloc(1000, 7);
    memory.write(0x10000, frame);
    txq.setDesc(0, { addr: 0x10000, len: 1000 });
    txq.addAvail(0);
    tx.process();
    expect(tx.stats.eagain).toBe(1);
    expect(tx.wantsWritable).toBe(true);
    expect(txq.usedIdx()).toBe(0); // not given back: not sent yet
    // Drain the pipe, then "writable" arrives.
    while (native.read(r, 1 << 20)) { /* drain */ }
    tx.writable();
    expect(txq.usedIdx()).toBe(1);
    expect(tx.stats.frames).toBe(1);
    expect(tx.wantsWritable).toBe(false);
    const out = native.read(r, 1 << 20)!;
    expect(out.length).toBe(1000); // exactly once
    expect(watchChanges).toBe(2);
    native.close(r);
    native.close(w);
  });
});

describe('virtio-net options and features', () => {
  test('unknown options are refused by name', () => {
    expect(() => parseOptions({ tap: 'x', speed: 10 })).toThrow(/unknown option 'speed'/);
    expect(() => parseOptions({ mac: 'zz' })).toThrow(/option 'mac'/);
    expect(() => parseOptions({ mac: '01:00:00:00:00:01' })).toThrow(/multicast/);
    expect(() => parseOptions({ mtu: 10 })).toThrow(/option 'mtu'/);
    expect(() => parseOptions({ fd: 3, tap: 'x' })).toThrow(/exclude/);
    expect(() => parseOptions({ create: 'yes' })).toThrow(/option 'create'/);
    expect(parseOptions({ tap: 'vmmtap0', create: false, mac: '52:54:00:12:34:56', mtu: 1500 })).toEqual({ tap: 'vmmtap0', create: false, mac: '52:54:00:12:34:56', mtu: 1500 });
    expect(() => plugin.apply({} as never, { bogus: 1 })).toThrow(/bogus/);
  });

  test('the default MAC is stable, unicast and locally administered', () => {
    const a = defaultMac('vmmtap0');
    expect(defaultMac('vmmtap0')).toEqual(a);
    expect(defaultMac('vmmtap1')).not.toEqual(a);
    expect(a[0] & 1).toBe(0);
    expect(a[0] & 2).toBe(2);
  });

  test('create:false refuses a missing interface', () => {
    expect(() => openTap({ tap: 'vmmnosuch0', create: false })).toThrow(/does not exist/);
  });

  test('offloads follow what the TAP accepts and what the driver takes', () => {
    const bit = (n: number) => 1n << BigInt(n);
    expect(offeredFeatures(0, undefined) & bit(C.VIRTIO_NET_F_CSUM)).toBe(0n);
    expect(offeredFeatures(0, 1500) & bit(C.VIRTIO_NET_F_MTU)).not.toBe(0n);
    const full = offeredFeatures(C.TUN_F_CSUM | C.TUN_F_TSO4 | C.TUN_F_TSO6, undefined);
    expect(full & bit(C.VIRTIO_NET_F_GUEST_TSO4)).not.toBe(0n);
    expect(full & bit(C.VIRTIO_NET_F_HOST_ECN)).toBe(0n);
    expect(tapOffloadsFor(bit(C.VIRTIO_NET_F_GUEST_TSO4))).toBe(0); // TSO without CSUM is not allowed
    expect(tapOffloadsFor(bit(C.VIRTIO_NET_F_GUEST_CSUM) | bit(C.VIRTIO_NET_F_GUEST_TSO4))).toBe(C.TUN_F_CSUM | C.TUN_F_TSO4);
  });
});
