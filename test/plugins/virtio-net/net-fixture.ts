/**
 * A network namespace with the host end of a TAP in it, and packet helpers, for virtio-net
 * tests. The TAP fd stays in this process (our namespace); only the interface moves into the
 * namespace, which keeps all test traffic inside it.
 */
import { execFileSync, spawn } from 'child_process';

export const NS = `vmmtest-${process.pid}`;
export const SUBNET = `10.201.${process.pid % 250}`;
export const HOST_IP = `${SUBNET}.1`;
export const GUEST_IP = `${SUBNET}.2`;

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

export function createNamespace(): void {
  try { execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' }); } catch { /* not there */ }
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
}

export function moveTap(name: string): void {
  ip('link', 'set', 'dev', name, 'netns', NS);
  ip('-n', NS, 'addr', 'add', `${HOST_IP}/24`, 'dev', name);
  ip('-n', NS, 'link', 'set', name, 'up');
}

/**
 * No IPv6 on interfaces moved into the namespace from now on: no router solicitations, MLD
 * reports or DAD probes arriving on the TAP at odd times, for tests that count frames.
 */
export function quietNamespace(): void {
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
}

/** The namespace's end of a TAP: its MAC, and a static neighbour entry for the guest (no ARP). */
export function hostEnd(tap: string, guestMac: Uint8Array): Uint8Array {
  const mac = Array.from(guestMac, (b) => b.toString(16).padStart(2, '0')).join(':');
  ip('-n', NS, 'neigh', 'replace', GUEST_IP, 'lladdr', mac, 'dev', tap);
  const [{ address }] = JSON.parse(ip('-n', NS, '-j', 'link', 'show', 'dev', tap)) as { address: string }[];
  return Uint8Array.from(address.split(':').map((h) => parseInt(h, 16)));
}

export function deleteNamespace(): void {
  try { ip('netns', 'del', NS); } catch { /* already gone */ }
}

/** Python inside the namespace (this host has no ping); resolves with its exit code and output. */
export function pythonInNamespace(script: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', NS, 'python3', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d) => { output += d; });
    p.stderr.on('data', (d) => { output += d; });
    p.on('exit', (code) => resolve({ code: code ?? -1, output }));
  });
}

/** A UDP request from the namespace that expects the same payload back (an echo). */
export function udpEchoFromNamespace(target: string, port: number, payload: string, timeoutS = 5): Promise<{ code: number; output: string }> {
  return pythonInNamespace([
    'import socket, sys',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    `s.settimeout(${timeoutS})`,
    `s.sendto(b'${payload}', ('${target}', ${port}))`,
    'data, peer = s.recvfrom(2048)',
    `sys.exit(0 if data == b'${payload}' else 2)`,
  ].join('\n'));
}

/** A burst of UDP datagrams "seq000".."seqNNN" from the namespace. */
export function udpBurstFromNamespace(target: string, port: number, count: number): Promise<{ code: number; output: string }> {
  return pythonInNamespace([
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    `for i in range(${count}): s.sendto(b'seq%03d' % i, ('${target}', ${port}))`,
  ].join('\n'));
}

export const ipBytes = (s: string): number[] => s.split('.').map(Number);
export const BROADCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

export function arpRequest(srcMac: Uint8Array, srcIp: string, targetIp: string): Uint8Array {
  return Uint8Array.from([
    ...BROADCAST, ...srcMac, 0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
    ...srcMac, ...ipBytes(srcIp), 0, 0, 0, 0, 0, 0, ...ipBytes(targetIp),
  ]);
}

function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

export function icmpEcho(srcMac: Uint8Array, dstMac: Uint8Array, srcIp: string, dstIp: string, type: 8 | 0, id: number, seq: number, payload: Uint8Array): Uint8Array {
  const icmp = new Uint8Array(8 + payload.length);
  icmp[0] = type;
  icmp[4] = id >> 8; icmp[5] = id & 0xff; icmp[6] = seq >> 8; icmp[7] = seq & 0xff;
  icmp.set(payload, 8);
  const c = checksum(icmp);
  icmp[2] = c >> 8; icmp[3] = c & 0xff;
  const ipHdr = Uint8Array.from([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0, ...ipBytes(srcIp), ...ipBytes(dstIp)]);
  const total = 20 + icmp.length;
  ipHdr[2] = total >> 8; ipHdr[3] = total & 0xff;
  const ic = checksum(ipHdr);
  ipHdr[10] = ic >> 8; ipHdr[11] = ic & 0xff;
  return Uint8Array.from([...dstMac, ...srcMac, 0x08, 0x00, ...ipHdr, ...icmp]);
}

/** An IPv4/UDP frame (UDP checksum 0: optional over IPv4, RFC 768). */
export function udpFrame(srcMac: Uint8Array, dstMac: Uint8Array, srcIp: string, dstIp: string, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const udp = new Uint8Array(8 + payload.length);
  udp[0] = srcPort >> 8; udp[1] = srcPort & 0xff; udp[2] = dstPort >> 8; udp[3] = dstPort & 0xff;
  udp[4] = udp.length >> 8; udp[5] = udp.length & 0xff;
  udp.set(payload, 8);
  const ipHdr = Uint8Array.from([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, ...ipBytes(srcIp), ...ipBytes(dstIp)]);
  const total = 20 + udp.length;
  ipHdr[2] = total >> 8; ipHdr[3] = total & 0xff;
  const ic = checksum(ipHdr);
  ipHdr[10] = ic >> 8; ipHdr[11] = ic & 0xff;
  return Uint8Array.from([...dstMac, ...srcMac, 0x08, 0x00, ...ipHdr, ...udp]);
}

export interface Parsed {
  dst: number[]; src: number[]; type: number;
  arp?: { op: number; senderMac: number[]; senderIp: string; targetIp: string };
  ipv4?: {
    proto: number; src: string; dst: string;
    icmp?: { type: number; id: number; seq: number; payload: Uint8Array };
    udp?: { srcPort: number; dstPort: number; payload: Uint8Array };
  };
}

export function parseFrame(f: Uint8Array): Parsed {
  const ipStr = (a: Uint8Array) => Array.from(a).join('.');
  const out: Parsed = { dst: Array.from(f.subarray(0, 6)), src: Array.from(f.subarray(6, 12)), type: (f[12] << 8) | f[13] };
  if (out.type === 0x0806) {
    out.arp = { op: (f[20] << 8) | f[21], senderMac: Array.from(f.subarray(22, 28)), senderIp: ipStr(f.subarray(28, 32)), targetIp: ipStr(f.subarray(38, 42)) };
  } else if (out.type === 0x0800) {
    const ihl = (f[14] & 0x0f) * 4;
    const total = (f[16] << 8) | f[17];
    out.ipv4 = { proto: f[23], src: ipStr(f.subarray(26, 30)), dst: ipStr(f.subarray(30, 34)) };
    if (out.ipv4.proto === 1) {
      const i = f.subarray(14 + ihl, 14 + total);
      out.ipv4.icmp = { type: i[0], id: (i[4] << 8) | i[5], seq: (i[6] << 8) | i[7], payload: i.slice(8) };
    } else if (out.ipv4.proto === 17) {
      const u = f.subarray(14 + ihl, 14 + total);
      out.ipv4.udp = { srcPort: (u[0] << 8) | u[1], dstPort: (u[2] << 8) | u[3], payload: u.slice(8, (u[4] << 8) | u[5]) };
    }
  }
  return out;
}
