/**
 * virtio-net end to end with a real Linux driver: the guest kernel configures eth0 itself
 * (ip=…), answers pings from a network namespace on the host, and sends its console over UDP
 * (netconsole). User space cannot run on our CI hosts' KVM (shared/notes/machine.md), so
 * everything here is served by the guest kernel alone.
 *
 * Layout: a namespace made for this test holds a persistent TAP `vmmt0` (10.200.0.1/24) and the
 * vmm process itself (`ip netns exec NS node dist/cli/vmm.js … --plugin virtio-net={"tap":"vmmt0"}`),
 * so the plugin opens that TAP; the guest is 10.200.0.2. The VM is stopped through its control
 * socket, the way a user would. Needs root (ip netns, tuntap).
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bootLinux, CLI, LINUX_BOOT_TIMEOUT_MS, linuxFixture, type LinuxGuest } from '../helpers/linux-guest';
import { TapNamespace } from '../helpers/tap-netns';
import { within } from '../helpers/wait';

jest.setTimeout(LINUX_BOOT_TIMEOUT_MS + 5 * 60_000);

const HOST_IP = '10.200.0.1';
const GUEST_IP = '10.200.0.2';
const NETCONSOLE_PORT = 6666;
const net = new TapNamespace(`vmmtest-net-${process.pid}`, 'vmmt0', HOST_IP);

/** A UDP listener inside the namespace: prints each datagram as one JSON string per line. */
const LISTENER = `
const s = require('dgram').createSocket('udp4');
s.on('message', (m) => process.stdout.write(JSON.stringify(m.toString('utf8')) + '\\n'));
s.bind(${NETCONSOLE_PORT}, '${HOST_IP}', () => process.stdout.write('"listening"\\n'));
`;

const ping = (...args: string[]) => net.run('ping', [...args, GUEST_IP], 300_000);
const summary = (out: string) => out.trim().split('\n').slice(-2).join(' | ');

describe('Linux guest on virtio-net', () => {
  let guest: LinuxGuest | undefined;
  let listener: ChildProcess | undefined;
  let datagrams: string[] = [];
  let dir: string;

  beforeAll(() => {
    linuxFixture(); // fails with a clear message when scripts/guest-kernel has not been run
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-linux-net-'));
    net.create();
  });

  afterAll(async () => {
    await guest?.stop(5_000);
    listener?.kill('SIGKILL');
    net.delete();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('configures eth0, answers pings with intact payloads through a flood, sends netconsole, stops with 0', async () => {
    const [command, args] = net.wrap(process.execPath, ['-e', LISTENER]);
    listener = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let buffered = '';
    listener.stdout!.setEncoding('utf8');
    const listening = new Promise<void>((resolve) => {
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
    await listening;

    const socket = path.join(dir, 'control.sock');
    guest = bootLinux({
      namespace: net,
      args: ['--plugin', `virtio-net=${JSON.stringify({ tap: net.tap })}`, '--plugin', `control=${JSON.stringify({ socket })}`],
      cmdline: `ip=${GUEST_IP}::${HOST_IP}:255.255.255.0::eth0:off netconsole=@${GUEST_IP}/eth0,${NETCONSOLE_PORT}@${HOST_IP}/`,
    });
    const configured = await guest.waitFor(/IP-Config: Complete/);
    process.stderr.write(`linux on vmm with virtio-net: IP-Config complete at ${(configured / 1000).toFixed(1)} s\n`);
    // The lines after "Complete:" name the address it took.
    await guest.waitFor(new RegExp(`device=eth0, .*ipaddr=${GUEST_IP.replace(/\./g, '\\.')}`), 30_000);

    // At once, while the kernel is still finishing its boot.
    const first = await ping('-c', '5', '-W', '5');
    expect(first.stdout).toMatch(/5 packets transmitted, 5 received, 0% packet loss/);

    // 500 pings with 1400-byte payloads; ping compares each echoed payload with what it sent
    // and prints "wrong data byte" on any difference (only without -q, which skips the check),
    // and "(DUP!)" for a reply seen twice. Paced adaptively (-A) with at most 4 in flight: the
    // emulated guest kernel here answers only ~30 packets/s, so a fixed rate above that only
    // measures how long its queues are.
    const burst = await ping('-A', '-l', '4', '-s', '1400', '-c', '500', '-W', '5');
    process.stderr.write(`1400-byte ping burst: ${summary(burst.stdout)}\n`);
    expect(burst.stdout).toMatch(/500 packets transmitted, 500 received, 0% packet loss/);
    expect(burst.stdout.match(/bytes from 10\.200\.0\.2: icmp_seq=/g)).toHaveLength(500);
    expect(burst.stdout + burst.stderr).not.toMatch(/wrong data|corrupted|DUP!|duplicates/);

    // A flood outruns this guest (replies later than -W count as lost), but must not wedge it:
    // this once left the guest replaying timer ticks for good (see DEFAULT_CPUID_HIDE).
    const flood = await ping('-q', '-f', '-c', '300', '-W', '2');
    process.stderr.write(`flood ping: ${summary(flood.stdout)}\n`);
    expect(Number(/(\d+) received/.exec(flood.stdout)?.[1] ?? 0)).toBeGreaterThan(0);
    // ping -f does not compare payloads, but its summary counts corrupted and duplicate replies.
    expect(flood.stdout + flood.stderr).not.toMatch(/corrupted|duplicates/);
    // It answers its backlog for seconds after the flood (RTTs above 6 s), during which the
    // host's ARP entry for it may lapse; once it answers at all, it must answer every ping.
    let answering = false;
    for (let i = 0; i < 12 && !answering; i++) answering = (await ping('-c', '1', '-W', '5')).status === 0;
    expect(answering).toBe(true);
    const after = await ping('-c', '5', '-W', '10');
    expect(after.stdout).toMatch(/5 packets transmitted, 5 received/);

    // netconsole: the kernel's messages since eth0 came up arrived over UDP.
    const received = datagrams.join('');
    expect(received).toMatch(/IP-Config: Complete|Run \/init|printk: console \[netcon0\] enabled/);

    const stop = await net.run(process.execPath, [CLI, 'ctl', '--socket', socket, 'stop']);
    expect(stop).toMatchObject({ status: 0 });
    expect(await within('vmm exiting after ctl stop', guest.exited, 30_000)).toEqual({ code: 0, signal: null });
    expect(guest.stderr()).not.toMatch(/internal error|crash/i);
  });
});
