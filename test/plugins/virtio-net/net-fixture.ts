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
  try { ip('netns', 'del', NS); } catch { /* not there */ }
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
}

export function moveTap(name: string): void {
  ip('link', 'set', 'dev', name, 'netns', NS);
  ip('-n', NS, 'addr', 'add', `${HOST_IP}/24`, 'dev', name);
  ip('-n', NS, 'link', 'set', name, 'up');
}

export function deleteNamespace(): void {
  try { ip('netns', 'del', NS); } catch { /* already gone */ }
}

/** `ping` inside the namespace; resolves with its exit code. */
export function pingFromNamespace(target: string, count = 1, timeoutS = 5): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', NS, 'ping', '-n', '-c', String(count), '-W', String(timeoutS), target], { stdio: 'ignore' });
    p.on('exit', (code) => resolve(code ?? -1));
  });
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

export interface Parsed {
  dst: number[]; src: number[]; type: number;
  arp?: { op: number; senderMac: number[]; senderIp: string; targetIp: string };
  ipv4?: { proto: number; src: string; dst: string; icmp?: { type: number; id: number; seq: number; payload: Uint8Array } };
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
    }
  }
  return out;
}

export async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
