/**
 * virtio-net end to end with a real Linux driver: the guest kernel configures eth0 itself
 * (ip=…), answers pings from a network namespace on the host, and sends its console over UDP
 * (netconsole). User space cannot run on our CI hosts' KVM (shared/notes/machine.md), so
 * everything here is served by the guest kernel alone.
 *
 * Layout: a namespace made for this test holds a persistent TAP `vmmt0` (10.200.0.1/24) and the
 * vmm process itself (`ip netns exec NS node dist/cli/vmm.js … --plugin virtio-net={"tap":"vmmt0"}`),
 * so the plugin opens that TAP; the guest is 10.200.0.2. Needs root (ip netns, tuntap).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'child_process';
import { bootLinux, LINUX_BOOT_TIMEOUT_MS, linuxFixture, type LinuxGuest } from '../helpers/linux-guest';

jest.setTimeout(LINUX_BOOT_TIMEOUT_MS + 5 * 60_000);

const NS = `vmmtest-net-${process.pid}`;
const TAP = 'vmmt0';
const HOST_IP = '10.200.0.1';
const GUEST_IP = '10.200.0.2';
const NETCONSOLE_PORT = 6666;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function inNs(command: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', NS, command, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** A UDP listener inside the namespace: prints each datagram as one JSON string per line. */
const LISTENER = `
const s = require('dgram').createSocket('udp4');
s.on('message', (m) => process.stdout.write(JSON.stringify(m.toString('utf8')) + '\\n'));
s.bind(${NETCONSOLE_PORT}, '${HOST_IP}', () => process.stdout.write('"listening"\\n'));
`;

describe('Linux guest on virtio-net', () => {
  let guest: LinuxGuest | undefined;
  let listener: ChildProcess | undefined;
  let datagrams: string[] = [];

  beforeAll(() => {
    linuxFixture(); // fails with a clear message when scripts/guest-kernel has not been run
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    ip('-n', NS, 'tuntap', 'add', 'dev', TAP, 'mode', 'tap');
    ip('-n', NS, 'addr', 'add', `${HOST_IP}/24`, 'dev', TAP);
    ip('-n', NS, 'link', 'set', TAP, 'up');
  });

  afterAll(async () => {
    await guest?.stop(5_000);
    listener?.kill('SIGKILL');
    spawnSync('ip', ['netns', 'delete', NS]);
  });

  it('configures eth0, answers pings with intact payloads, and sends netconsole over UDP', async () => {
    listener = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', LISTENER], { stdio: ['ignore', 'pipe', 'inherit'] });
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

    guest = bootLinux({
      netns: NS,
      args: ['--plugin', `virtio-net=${JSON.stringify({ tap: TAP })}`],
      cmdline: `ip=${GUEST_IP}::${HOST_IP}:255.255.255.0::eth0:off netconsole=@${GUEST_IP}/eth0,${NETCONSOLE_PORT}@${HOST_IP}/`,
    });
    const configured = await guest.waitFor(/IP-Config: Complete/);
    await guest.waitFor('Run /init as init process');
    process.stderr.write(`linux on vmm with virtio-net: IP-Config complete at ${(configured / 1000).toFixed(1)} s\n`);
    expect(guest.output()).toMatch(new RegExp(`ipaddr=${GUEST_IP.replace(/\./g, '\\.')}`));

    const first = inNs('ping', '-c', '5', '-W', '5', GUEST_IP);
    expect(first.stdout).toMatch(/5 packets transmitted, 5 received, 0% packet loss/);

    // 500 pings with 1400-byte payloads; ping compares each echoed payload with what it sent
    // and prints "wrong data byte" on any difference. Paced adaptively (-A) with at most 4 in
    // flight: the emulated guest kernel here answers only ~30 packets/s, and a fixed -i 0.01
    // (100/s) overflowed its receive queue (226/500 answered, RTT up to 13 s, no corruption).
    const burst = inNs('ping', '-q', '-A', '-l', '4', '-s', '1400', '-c', '500', '-i', '0.01', '-W', '5', GUEST_IP);
    process.stderr.write(`1400-byte ping burst: ${burst.stdout.trim().split('\n').slice(-2).join(' | ')}\n`);
    expect(burst.stdout).toMatch(/500 packets transmitted, 500 received, 0% packet loss/);
    expect(burst.stdout + burst.stderr).not.toMatch(/wrong data|corrupted|DUP!/);

    // netconsole: the kernel's messages since eth0 came up arrived over UDP.
    const received = datagrams.join('');
    expect(received).toMatch(/IP-Config: Complete|Run \/init|netconsole|printk: console \[netcon0\] enabled/);

    const exit = await guest.stop();
    expect(exit).toEqual({ code: 143, signal: null });
  });
});
