/** TapOffloads (how often TUNSETOFFLOAD reaches the kernel) and rxHeaderFits, without a TAP. */
import createDebug from 'debug';
import * as C from '../../../plugins/virtio-net/constants';
import { rxHeaderFits, TapOffloads } from '../../../plugins/virtio-net/offloads';
import { sleep, until } from '../../helpers/wait';

const log = createDebug('vmm:virtio-net');
const INTERVAL = 50;
const TSO = C.TUN_F_CSUM | C.TUN_F_TSO4 | C.TUN_F_TSO6;

describe('TapOffloads', () => {
  test('the same value again reaches nothing; a first change goes at once; later ones coalesce to the latest', async () => {
    const set: number[] = [];
    const offloads = new TapOffloads((flags) => { set.push(flags); }, 0, log, INTERVAL);
    offloads.want(0);
    expect(set).toEqual([]);
    offloads.want(TSO);
    expect(set).toEqual([TSO]);
    offloads.want(TSO);
    offloads.want(0);
    offloads.want(C.TUN_F_CSUM);
    expect(set).toEqual([TSO]); // within the interval: waits
    await until('the latest value', () => offloads.current === C.TUN_F_CSUM, 10 * INTERVAL);
    expect(set).toEqual([TSO, C.TUN_F_CSUM]);
    // Back to what the TAP has before the interval ends: the pending change is dropped.
    offloads.want(0);
    offloads.want(C.TUN_F_CSUM);
    await sleep(2 * INTERVAL);
    expect(set).toEqual([TSO, C.TUN_F_CSUM]);
    offloads.close();
  });

  test('a failing ioctl (the interface went away) is retried only when wanted again, at the same rate', async () => {
    let calls = 0;
    const offloads = new TapOffloads(() => { calls++; throw new Error('EBADFD'); }, 0, log, INTERVAL);
    const start = performance.now();
    for (let i = 0; i < 10000; i++) offloads.want(i % 2 ? TSO : C.TUN_F_CSUM);
    const windows = Math.ceil((performance.now() - start) / INTERVAL);
    expect(calls).toBeLessThanOrEqual(windows + 1);
    await sleep(3 * INTERVAL);
    // One retry of the last wanted value when the interval ended, and no timer polling after it.
    const settled = calls;
    expect(settled).toBeLessThanOrEqual(windows + 2);
    await sleep(3 * INTERVAL);
    expect(calls).toBe(settled);
    expect(offloads.stats).toEqual({ ioctls: calls, failed: calls });
    expect(offloads.current).toBe(0);
    offloads.close();
  });

  test('close() cancels a pending change', async () => {
    const set: number[] = [];
    const offloads = new TapOffloads((flags) => { set.push(flags); }, 0, log, INTERVAL);
    offloads.want(TSO);
    offloads.want(C.TUN_F_CSUM);
    offloads.close();
    offloads.want(0);
    await sleep(2 * INTERVAL);
    expect(set).toEqual([TSO]);
  });
});

describe('rxHeaderFits', () => {
  const header = (flags: number, gso: number): Buffer => Buffer.from([flags, gso, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa]);
  const ALL = TSO | C.TUN_F_TSO_ECN;
  const { VIRTIO_NET_HDR_F_NEEDS_CSUM: NEEDS_CSUM, VIRTIO_NET_HDR_F_DATA_VALID: DATA_VALID } = C;

  test.each([
    ['plain frame, nothing accepted', 0, 0, 0, true, 0],
    ['partial checksum, CSUM not accepted', NEEDS_CSUM, 0, 0, false, NEEDS_CSUM],
    ['partial checksum, CSUM accepted', NEEDS_CSUM, 0, C.TUN_F_CSUM, true, NEEDS_CSUM],
    ['DATA_VALID without CSUM: cleared (§5.1.6.4.1: flags 0)', DATA_VALID, 0, 0, true, 0],
    ['DATA_VALID with CSUM: kept', DATA_VALID, 0, C.TUN_F_CSUM, true, DATA_VALID],
    ['RSC_INFO (never offered): cleared', 4, 0, ALL, true, 0],
    ['TSOv4 without GUEST_TSO4', NEEDS_CSUM, C.VIRTIO_NET_HDR_GSO_TCPV4, C.TUN_F_CSUM | C.TUN_F_TSO6, false, NEEDS_CSUM],
    ['TSOv4 accepted', NEEDS_CSUM, C.VIRTIO_NET_HDR_GSO_TCPV4, C.TUN_F_CSUM | C.TUN_F_TSO4, true, NEEDS_CSUM],
    ['TSOv6 accepted', NEEDS_CSUM, C.VIRTIO_NET_HDR_GSO_TCPV6, TSO, true, NEEDS_CSUM],
    ['TSOv4 with ECN, ECN not accepted', NEEDS_CSUM, C.VIRTIO_NET_HDR_GSO_TCPV4 | C.VIRTIO_NET_HDR_GSO_ECN, TSO, false, NEEDS_CSUM],
    ['TSOv4 with ECN accepted', NEEDS_CSUM, C.VIRTIO_NET_HDR_GSO_TCPV4 | C.VIRTIO_NET_HDR_GSO_ECN, ALL, true, NEEDS_CSUM],
    ['UFO (never offered)', NEEDS_CSUM, 3, ALL, false, NEEDS_CSUM],
    ['USO (never offered)', NEEDS_CSUM, 5, ALL, false, NEEDS_CSUM],
  ])('%s', (_what, flags, gso, accepted, fits, flagsAfter) => {
    const frame = header(flags, gso);
    expect(rxHeaderFits(frame, accepted)).toBe(fits);
    expect(frame[0]).toBe(flagsAfter);
    expect(frame[12]).toBe(0xaa);
  });
});
