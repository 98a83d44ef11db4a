/**
 * bench/linux: a real Linux guest (scripts/guest-kernel) on vmm with virtio-net, side by side
 * with qemu-system-x86_64 -M microvm,acpi=off on the same vmlinux and initramfs, same machine,
 * same run.
 *
 *   node dist/bench/linux/run.js [FLOOD_COUNT]      (root: network namespace + TAP; needs QEMU)
 *
 * Figures: time from spawn to `IP-Config: Complete` and to the first ping reply, ping RTT (150
 * pings once the guest runs /init), and the replies per second of a flood ping (ping -f -c N)
 * from a network namespace, each with the ratio vmm/QEMU. On our nested CI hosts the guest
 * kernel is emulated, so these are dominated by the host; compare only figures from one run.
 */
import {
  BASE_CMDLINE, bootLinux, linuxFixture, spawnGuest, type LinuxFixture, type LinuxGuest,
} from '../../test/helpers/linux-guest';
import { TapNamespace } from '../../test/helpers/tap-netns';

const HOST_IP = '10.200.0.1';
const GUEST_IP = '10.200.0.2';
const net = new TapNamespace(`vmmbench-${process.pid}`, 'vmmt0', HOST_IP);
const NET_CMDLINE = `ip=${GUEST_IP}::${HOST_IP}:255.255.255.0::eth0:off`;
// The CPU model of shared/notes/machine.md, with what vmm's default CPUID mask hides (tsc-deadline
// too, though qemu64 lacks it anyway).
const QEMU_CPU = 'qemu64,-kvm-steal-time,-smap,-smep,-popcnt,-movbe,-fsgsbase,-rdrand,-rdseed,-invpcid,-pcid,-xsave,-tsc-deadline';
const RTT_PINGS = 150;

interface Figures {
  ipConfig: number;
  firstReply: number;
  rttMs: number;
  /** Replies per second of the flood's duration (ping -f sends as fast as replies come). */
  floodPerSecond: number;
  floodLoss: string;
}

async function ping(...args: string[]): Promise<string> {
  const r = await net.run('ping', [...args, GUEST_IP], 600_000);
  return r.stdout + r.stderr;
}

async function measure(name: string, guest: LinuxGuest, flood: number): Promise<Figures> {
  try {
    const ipConfig = await guest.waitFor(/IP-Config: Complete/);
    let firstReply = NaN;
    for (let i = 0; i < 600 && Number.isNaN(firstReply); i++) {
      if (/1 received/.test(await ping('-c', '1', '-W', '1'))) firstReply = performance.now() - guest.startedAt;
    }
    // Steady state: after /init the kernel has no boot work left. The interval is no multiple of
    // the guest's 10 ms tick, so the pings meet every phase of it (a reply that waits for the
    // next tick takes ~10 ms longer; at -i 0.2 a run could see only one phase).
    await guest.waitFor('Run /init as init process');
    const rtt = await ping('-q', '-c', String(RTT_PINGS), '-i', '0.137');
    const rttMs = Number(/= [\d.]+\/([\d.]+)\//.exec(rtt)?.[1] ?? NaN);
    const floodOut = await ping('-q', '-f', '-c', String(flood), '-W', '2');
    const time = Number(/time (\d+)ms/.exec(floodOut)?.[1] ?? NaN);
    const received = Number(/(\d+) received/.exec(floodOut)?.[1] ?? 0);
    const floodLoss = /([\d.]+)% packet loss/.exec(floodOut)?.[1] ?? '?';
    process.stderr.write(`${name}: ${floodOut.trim().split('\n').slice(-2).join(' | ')}\n`);
    return { ipConfig, firstReply, rttMs, floodPerSecond: (received / time) * 1000, floodLoss: `${floodLoss}%` };
  } finally {
    await guest.stop(10_000);
  }
}

function vmmGuest(): LinuxGuest {
  return bootLinux({ netns: net.name, args: ['--plugin', `virtio-net=${JSON.stringify({ tap: net.tap })}`], cmdline: NET_CMDLINE });
}

function qemuGuest(fixture: LinuxFixture): LinuxGuest {
  return spawnGuest(...net.wrap('qemu-system-x86_64', [
    '-M', 'microvm,acpi=off', '-enable-kvm', '-cpu', QEMU_CPU, '-m', '128M',
    '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio',
    '-netdev', `tap,id=n0,ifname=${net.tap},script=no,downscript=no`, '-device', 'virtio-net-device,netdev=n0',
    '-kernel', fixture.vmlinux, '-initrd', fixture.initramfs, '-append', `${BASE_CMDLINE} ${NET_CMDLINE}`,
  ]));
}

async function main(): Promise<void> {
  const flood = Number(process.argv[2] ?? 1000);
  const fixture = linuxFixture();
  net.create();
  try {
    const vmm = await measure('vmm', vmmGuest(), flood);
    const qemu = await measure('qemu', qemuGuest(fixture), flood);
    const row = (label: string, a: number, b: number, unit: string, digits = 1) =>
      `${label.padEnd(28)} ${a.toFixed(digits).padStart(10)} ${b.toFixed(digits).padStart(10)} ${unit.padEnd(6)} ${(a / b).toFixed(2).padStart(6)}`;
    console.log(`${'linux guest (virtio-net)'.padEnd(28)} ${'vmm'.padStart(10)} ${'qemu'.padStart(10)} ${'unit'.padEnd(6)} ${'ratio'.padStart(6)}`);
    console.log(row('spawn → IP-Config: Complete', vmm.ipConfig / 1000, qemu.ipConfig / 1000, 's'));
    console.log(row('spawn → first ping reply', vmm.firstReply / 1000, qemu.firstReply / 1000, 's'));
    console.log(row(`ping RTT (mean of ${RTT_PINGS})`, vmm.rttMs, qemu.rttMs, 'ms', 2));
    console.log(row(`flood ping (${flood}), replies`, vmm.floodPerSecond, qemu.floodPerSecond, 'pkt/s'));
    console.log(`flood loss: vmm ${vmm.floodLoss}, qemu ${qemu.floodLoss}`);
  } finally {
    net.delete();
  }
}

main().catch((error) => {
  process.stderr.write(`bench/linux: ${(error as Error).message}\n`);
  net.delete();
  process.exitCode = 1;
});
