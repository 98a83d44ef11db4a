/**
 * virtio-net end to end with a real Linux driver and real user space on both sides, through the
 * CLI: the guest kernel configures eth0 (ip=…) and sends netconsole; busybox and the guest's
 * `netio` move TCP and UDP data that the host side (test/linux/net-peer.ts) checks byte for byte.
 *
 * Layout: a namespace made for this test holds a persistent TAP `vmmt0` (10.200.0.1/24), the host
 * peers, and the vmm process itself (`ip netns exec NS node dist/cli/vmm.js …`), so all traffic
 * stays in the namespace; the guest is 10.200.0.2. The VM is stopped through its control socket,
 * the way a user would. Needs root (ip netns, tuntap) and ethtool.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CLI, LINUX_BOOT_TIMEOUT_MS, linuxFixture } from '../helpers/linux-guest';
import { LinuxConsole } from '../helpers/linux-console';
import { TapNamespace } from '../helpers/tap-netns';
import { within } from '../helpers/wait';
import { NetPeer } from './net-peer';

jest.setTimeout(LINUX_BOOT_TIMEOUT_MS + 8 * 60_000);

const HOST_IP = '10.200.0.1';
const GUEST_IP = '10.200.0.2';
const NETCONSOLE_PORT = 6666;
/**
 * Bytes each way. Where the time goes (measured from /proc/PID/task/TID/stat while netio ran):
 * vmm's vCPU thread is at 97-100 % for the whole transfer and every other vmm thread at 1-2 %,
 * so the emulated guest kernel of our CI hosts is the bottleneck, not vmm's virtio-net path
 * (ioeventfd, irqfd, EVENT_IDX). Its cost is per frame more than per byte: a kernel copy there
 * runs at about 2 MiB/s, while a 1500-byte frame costs 10-25 ms of kernel work. With the offloads
 * on, TCP's TSO autosizing (one millisecond of its slow pacing rate) made GSO frames of only 2-3
 * segments; with net.ipv4.tcp_min_tso_segs=44 in the guest they are up to 64 KiB and 4 MiB
 * upload in 21 s instead of 49 s. So the offloads-on run moves the 8 MiB of issue 11
 * (about 40 s up, 55 s down here). Without offloads every frame is at most 1514 bytes (18 s/MiB
 * up, 8 s/MiB down): 8 MiB would take about 3.5 minutes on its own, beyond this suite's budget,
 * so that run moves VMM_LINUX_TCP_MIB_OFF MiB (1 by default; 8 runs the figure).
 */
const mebibytes = (name: string, fallback: number) => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a whole number of MiB, at least 1; got ${JSON.stringify(process.env[name])}`);
  return n * 2 ** 20;
};
const TCP_BYTES_ON = mebibytes('VMM_LINUX_TCP_MIB', 8);
const TCP_BYTES_OFF = mebibytes('VMM_LINUX_TCP_MIB_OFF', 1);
/** Segments per GSO frame at least (Linux's default is 2): 44 × 1448 bytes is about 64 KiB. */
const TCP_MIN_TSO_SEGS = 44;
const CONNECTIONS = 20;
/** Largest Ethernet frame without offloads: 1500-byte MTU plus the 14-byte header. */
const MAX_FRAME = 1514;
const net = new TapNamespace(`vmmtest-linux-net-${process.pid}`, 'vmmt0', HOST_IP);

/** A UDP listener inside the namespace: prints each datagram as one JSON string per line. */
const NETCONSOLE_LISTENER = `
const s = require('dgram').createSocket('udp4');
s.on('message', (m) => process.stdout.write(JSON.stringify(m.toString('utf8')) + '\\n'));
s.bind(${NETCONSOLE_PORT}, '${HOST_IP}', () => process.stdout.write('"listening"\\n'));
`;

const ping = (...args: string[]) => net.run('ping', [...args, GUEST_IP], 300_000);
const summary = (out: string) => out.trim().split('\n').slice(-2).join(' | ');

interface Digest { bytes: number; sha256: string }

/** Bytes and frames through the host side of the TAP so far (rx: from the guest). */
async function tapCounters(): Promise<{ rxBytes: number; rxPackets: number; txBytes: number; txPackets: number }> {
  const r = await net.run('ip', ['-s', '-j', 'link', 'show', net.tap]);
  if (r.status !== 0) throw new Error(`ip -s link failed: ${r.stderr}`);
  const [{ stats64 }] = JSON.parse(r.stdout) as [{ stats64: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number } } }];
  return { rxBytes: stats64.rx.bytes, rxPackets: stats64.rx.packets, txBytes: stats64.tx.bytes, txPackets: stats64.tx.packets };
}

/** `netio` output: "sent|received N bytes sha256 HEX in T ms". */
function parseNetio(out: string): Digest & { ms: number } {
  const m = /(?:sent|received) (\d+) bytes sha256 ([0-9a-f]{64}) in (\d+) ms/.exec(out);
  if (!m) throw new Error(`unexpected netio output: ${JSON.stringify(out)}`);
  return { bytes: Number(m[1]), sha256: m[2], ms: Number(m[3]) };
}

describe('Linux guest on virtio-net', () => {
  let shell: LinuxConsole | undefined;
  let listener: ChildProcess | undefined;
  const peers: NetPeer[] = [];
  const datagrams: string[] = [];
  let socket: string;
  let dir: string;
  let port = 5000;

  const peer = async (mode: string, ...args: (string | number)[]) => {
    const p = new NetPeer(net, mode, args);
    peers.push(p);
    return p.ready();
  };

  /** Uploads and downloads `bytes`, checks SHA-256 on both ends; returns the average frame sizes. */
  async function tcpBothWays(label: string, bytes: number): Promise<{ upFrame: number; downFrame: number }> {
    const before = await tapCounters();
    const sink = await peer('tcp-sink', HOST_IP, ++port, 1);
    const sent = parseNetio(await shell!.ok(`netio send ${HOST_IP} ${port} ${bytes} 11`, 300_000));
    const received = await sink.next<Digest>();
    expect(received).toEqual({ bytes: bytes, sha256: sent.sha256 });
    const middle = await tapCounters();

    const source = await peer('tcp-source', HOST_IP, ++port, bytes, 1);
    const got = parseNetio(await shell!.ok(`netio recv ${HOST_IP} ${port}`, 300_000));
    const served = await source.next<Digest>();
    expect(got).toMatchObject(served);
    const after = await tapCounters();

    const upFrame = (middle.rxBytes - before.rxBytes) / (middle.rxPackets - before.rxPackets);
    const downFrame = (after.txBytes - middle.txBytes) / (after.txPackets - middle.txPackets);
    const rate = (ms: number) => `${((bytes / 2 ** 20) / (ms / 1000)).toFixed(2)} MiB/s`;
    process.stderr.write(`TCP ${label}: up ${sent.ms} ms (${rate(sent.ms)}), down ${got.ms} ms (${rate(got.ms)}); ` +
      `average frame from the guest ${upFrame.toFixed(0)} B, to it ${downFrame.toFixed(0)} B\n`);
    return { upFrame, downFrame };
  }

  beforeAll(async () => {
    linuxFixture(); // fails with a clear message when scripts/guest-kernel has not been run
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-linux-net-'));
    socket = path.join(dir, 'control.sock');
    net.create();
    const [command, args] = net.wrap(process.execPath, ['-e', NETCONSOLE_LISTENER]);
    listener = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let buffered = '';
    listener.stdout!.setEncoding('utf8');
    await new Promise<void>((resolve) => {
      listener!.stdout!.on('data', (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          const text = JSON.parse(line) as string;
          if (text === 'listening') resolve(); else datagrams.push(text);
        }
      });
    });
    shell = await LinuxConsole.boot({
      namespace: net,
      args: ['--plugin', `virtio-net=${JSON.stringify({ tap: net.tap })}`, '--plugin', `control=${JSON.stringify({ socket })}`],
      cmdline: `ip=${GUEST_IP}::${HOST_IP}:255.255.255.0::eth0:off netconsole=@${GUEST_IP}/eth0,${NETCONSOLE_PORT}@${HOST_IP}/`,
    });
    process.stderr.write(`linux on vmm with virtio-net: shell prompt at ${(shell.bootedAt / 1000).toFixed(1)} s\n`);
  });

  afterAll(async () => {
    await shell?.stop(5_000);
    for (const p of peers) p.kill();
    listener?.kill('SIGKILL');
    net.delete();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('configures eth0, sends netconsole, and answers pings with intact payloads', async () => {
    expect(shell!.output()).toMatch(new RegExp(`IP-Config: Complete[^]*device=eth0, .*ipaddr=${GUEST_IP.replace(/\./g, '\\.')}`));
    const first = await ping('-c', '5', '-W', '5');
    expect(first.stdout).toMatch(/5 packets transmitted, 5 received, 0% packet loss/);
    // 300 pings with 1400-byte payloads; ping compares each echoed payload with what it sent and
    // prints "wrong data byte" on any difference (only without -q), "(DUP!)" for a reply seen
    // twice. Paced adaptively (-A) with at most 4 in flight: the emulated guest kernel answers
    // only ~30 packets/s here, so a fixed rate above that only measures its queues.
    const burst = await ping('-A', '-l', '4', '-s', '1400', '-c', '300', '-W', '5');
    process.stderr.write(`1400-byte ping burst: ${summary(burst.stdout)}\n`);
    expect(burst.stdout).toMatch(/300 packets transmitted, 300 received, 0% packet loss/);
    expect(burst.stdout.match(/bytes from 10\.200\.0\.2: icmp_seq=/g)).toHaveLength(300);
    expect(burst.stdout + burst.stderr).not.toMatch(/wrong data|corrupted|DUP!|duplicates/);
    // netconsole: the kernel's messages since eth0 came up arrived over UDP.
    expect(datagrams.join('')).toMatch(/IP-Config: Complete|Run \/init|printk: console \[netcon0\] enabled/);
  });

  it('pings the host from the guest', async () => {
    const out = await shell!.ok(`ping -c 3 -W 5 ${HOST_IP}`, 60_000);
    expect(out).toMatch(/3 packets transmitted, 3 packets received, 0% packet loss/);
  });

  it(`moves ${TCP_BYTES_ON / 2 ** 20} MiB each way over TCP intact with the offloads on (GSO frames both ways)`, async () => {
    // The driver took the checksum and segmentation offloads that vmm offers when the TAP has them.
    const features = await shell!.ok('netio offload eth0');
    expect(features).toMatch(/tx-checksumming: on/);
    expect(features).toMatch(/tcp-segmentation-offload: on/);
    // Large GSO frames from the guest (see TCP_BYTES_ON); put back for the runs after this one.
    const segs = (await shell!.ok('cat /proc/sys/net/ipv4/tcp_min_tso_segs')).trim();
    await shell!.ok(`echo ${TCP_MIN_TSO_SEGS} > /proc/sys/net/ipv4/tcp_min_tso_segs`);
    const { upFrame, downFrame } = await tcpBothWays('offloads on', TCP_BYTES_ON);
    await shell!.ok(`echo ${segs} > /proc/sys/net/ipv4/tcp_min_tso_segs`);
    // On average larger than any Ethernet frame: some were GSO frames, segmented by the other side.
    expect(upFrame).toBeGreaterThan(MAX_FRAME);
    expect(downFrame).toBeGreaterThan(MAX_FRAME);
  });

  it(`moves ${TCP_BYTES_OFF / 2 ** 20} MiB each way over TCP intact with the offloads off (full checksums, no GSO)`, async () => {
    expect(await shell!.ok('netio offload eth0 off')).toMatch(/tx-checksumming: off[^]*tcp-segmentation-offload: off/);
    const host = await net.run('ethtool', ['-K', net.tap, 'tx', 'off', 'sg', 'off', 'tso', 'off', 'gso', 'off']);
    expect(host).toMatchObject({ status: 0 });
    const { upFrame, downFrame } = await tcpBothWays('offloads off', TCP_BYTES_OFF);
    expect(upFrame).toBeLessThanOrEqual(MAX_FRAME);
    expect(downFrame).toBeLessThanOrEqual(MAX_FRAME);
    expect(await shell!.ok('netio offload eth0 on')).toMatch(/tx-checksumming: on[^]*tcp-segmentation-offload: on/);
    expect(await net.run('ethtool', ['-K', net.tap, 'tx', 'on', 'sg', 'on', 'tso', 'on', 'gso', 'on'])).toMatchObject({ status: 0 });
  });

  it(`carries ${CONNECTIONS} TCP connections at once`, async () => {
    const bytes = 64 << 10;
    const sink = await peer('tcp-sink', HOST_IP, ++port, CONNECTIONS);
    // All start before any finishes: the sink reads nothing until all are open.
    const out = await shell!.ok(
      `for i in $(seq ${CONNECTIONS}); do netio send ${HOST_IP} ${port} ${bytes} $i > /tmp/conn.$i & done; wait; cat /tmp/conn.*`, 300_000);
    const sent = out.trim().split('\n').map(parseNetio);
    expect(sent).toHaveLength(CONNECTIONS);
    const received: Digest[] = [];
    for (let i = 0; i < CONNECTIONS; i++) received.push(await sink.next<Digest>());
    expect(await sink.next()).toEqual({ done: true, open: CONNECTIONS });
    const hashes = (list: Digest[]) => list.map((d) => `${d.bytes} ${d.sha256}`).sort();
    expect(hashes(received)).toEqual(hashes(sent));
    // Different seeds: twenty different streams, not one stream twenty times.
    expect(new Set(sent.map((d) => d.sha256)).size).toBe(CONNECTIONS);
  });

  it('carries UDP both ways: host → guest echo → host, and guest → host', async () => {
    const count = 100;
    const size = 1400;
    await shell!.ok(`netio udp-echo ${++port} ${count} > /tmp/udp-echo.out &`);
    // It says so once its socket is bound.
    let listening = false;
    for (let i = 0; i < 50 && !listening; i++) listening = (await shell!.ok('cat /tmp/udp-echo.out')).includes('listening');
    expect(listening).toBe(true);
    const echo = await peer('udp-ping', HOST_IP, GUEST_IP, port, count, size);
    const pinged = await echo.next<{ sent: number; echoed: number; mismatched: number; retried: number; sha256: string }>(300_000);
    expect(pinged).toMatchObject({ sent: count, echoed: count, mismatched: 0 });
    process.stderr.write(`UDP echo: ${count} datagrams, ${pinged.retried} sent again after ${3} s without an echo\n`);
    const echoed = await shell!.ok('wait; cat /tmp/udp-echo.out');
    expect(echoed).toContain(`echoed ${count} datagrams ${count * size} bytes sha256 ${pinged.sha256}`);

    const sink = await peer('udp-sink', HOST_IP, ++port, count, size);
    const sent = await shell!.ok(`netio udp-send ${HOST_IP} ${port} ${count} ${size}`);
    const got = await sink.next<{ received: number; bad: number; sha256: string }>();
    expect(got).toEqual({ received: count, bad: 0, sha256: expect.any(String) });
    expect(sent).toContain(`sent ${count} datagrams ${count * size} bytes sha256 ${got.sha256}`);
  });

  it('lives through a ping flood and answers again', async () => {
    // A flood outruns this guest (replies later than -W count as lost), but must not wedge it.
    const flood = await ping('-q', '-f', '-c', '300', '-W', '2');
    process.stderr.write(`flood ping: ${summary(flood.stdout)}\n`);
    expect(Number(/(\d+) received/.exec(flood.stdout)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(flood.stdout + flood.stderr).not.toMatch(/corrupted|duplicates/);
    let answering = false;
    for (let i = 0; i < 12 && !answering; i++) answering = (await ping('-c', '1', '-W', '5')).status === 0;
    expect(answering).toBe(true);
    expect(await shell!.ok('echo shell fine')).toBe('shell fine\n');
  });

  it('stops promptly on vmm ctl stop while the guest spins at 100 % in user space', async () => {
    shell!.type('cpu spin');
    await shell!.guest.waitFor('spinning', 30_000, shell!.output().length);
    await new Promise((r) => setTimeout(r, 2_000));
    const asked = performance.now();
    const stop = await net.run(process.execPath, [CLI, 'ctl', '--socket', socket, 'stop']);
    expect(stop).toMatchObject({ status: 0 });
    expect(await within('vmm exiting after ctl stop', shell!.guest.exited, 10_000)).toEqual({ code: 0, signal: null });
    process.stderr.write(`ctl stop with a spinning guest: vmm exited after ${(performance.now() - asked).toFixed(0)} ms\n`);
    expect(shell!.guest.stderr()).not.toMatch(/internal error|crash/i);
  });
});
