/**
 * bench/linux: a real Linux guest (scripts/guest-kernel) on vmm with virtio-net, side by side
 * with qemu-system-x86_64 -M microvm,acpi=off on the same vmlinux, initramfs and command line.
 *
 *   node dist/bench/linux/run.js [RTT_ROUNDS] [FLOOD_SECONDS] [PAIR]   (root: network namespaces + TAPs; needs QEMU)
 *
 * PAIR is `vmm,qemu` (the default), or `vmm,vmm` / `qemu,qemu`: the same VMM twice, which shows
 * how far two identical guests differ on this host (the noise floor of the ratios).
 *
 * Both guests run at once, each behind its own TAP in its own network namespace, so that both
 * see the same host at the same time. On our nested CI hosts the guest kernel is emulated and a
 * guest's speed drifts by tens of percent for seconds at a time (independently for each VM, and
 * as much between two vmm guests as between vmm and QEMU), so one guest measured after the other
 * compares two moments more than two VMMs:
 * - boot: spawn → `IP-Config: Complete` and → first ping reply, both booting together; which VMM
 *   starts first (and so, likely, which host core each vCPU thread gets) is drawn at random;
 * - RTT: RTT_ROUNDS rounds, each pinging both guests once, one at a time, in random order, with
 *   random pauses; `±` is the standard error over blocks of rounds, which understates how far
 *   two runs differ (PAIR=vmm,vmm shows that);
 * - flood: replies per second of `ping -f -w FLOOD_SECONDS` at one guest while the other VMM process
 *   is stopped (SIGSTOP), so that the idle guest, whose emulated halt keeps a host core busy, takes
 *   nothing from it. The host side has a permanent neighbour entry for the guest, so that no ARP
 *   probe waits behind the flood (the stopped guest's entry would otherwise be stale and fail).
 *   A deadline instead of a count: the guest answers far slower than ping -f sends,
 *   so a count run ends with hundreds of requests still queued, and how many of those ping waits
 *   for decides its figure.
 */
import {
  BASE_CMDLINE, bootLinux, linuxFixture, spawnGuest, type LinuxFixture, type LinuxGuest,
} from '../../test/helpers/linux-guest';
import { TapNamespace } from '../../test/helpers/tap-netns';
import { sleep } from '../../test/helpers/wait';

const HOST_IP = '10.200.0.1';
const GUEST_IP = '10.200.0.2';
const NET_CMDLINE = `ip=${GUEST_IP}::${HOST_IP}:255.255.255.0::eth0:off`;
/** Both guests get this MAC, and each namespace a permanent neighbour entry for it. */
const GUEST_MAC = '52:54:00:12:34:56';
// The CPU model of shared/notes/machine.md, with what vmm's default CPUID mask hides (tsc-deadline
// too, though qemu64 lacks it anyway).
const QEMU_CPU = 'qemu64,-kvm-steal-time,-smap,-smep,-popcnt,-movbe,-fsgsbase,-rdrand,-rdseed,-invpcid,-pcid,-xsave,-tsc-deadline';
/** Rounds per block for the RTT spread. */
const BLOCK = 50;

type Kind = 'vmm' | 'qemu';

interface Side {
  kind: Kind;
  /** The kind, numbered when both sides are of one kind. */
  name: string;
  net: TapNamespace;
  guest?: LinuxGuest;
}

interface BootFigures { ipConfig: number; firstReply: number }

async function ping(side: Side, ...args: string[]): Promise<string> {
  const r = await side.net.run('ping', [...args, GUEST_IP], 600_000);
  return r.stdout + r.stderr;
}

/** One echo round trip in ms (ping's own timing), or null without a reply. */
async function pingOnce(side: Side): Promise<number | null> {
  const m = /= ([\d.]+)\//.exec(await ping(side, '-q', '-c', '1', '-W', '2'));
  return m ? Number(m[1]) : null;
}

async function bootFigures(side: Side): Promise<BootFigures> {
  const guest = side.guest!;
  const ipConfig = await guest.waitFor(/IP-Config: Complete/);
  for (let i = 0; i < 600; i++) {
    if (/1 received/.test(await ping(side, '-c', '1', '-W', '1'))) return { ipConfig, firstReply: performance.now() - guest.startedAt };
  }
  throw new Error(`${side.name}: no ping reply within 600 tries after IP-Config`);
}

/** Both sides, in an order drawn at random. */
function inRandomOrder(sides: Side[]): Side[] {
  return Math.random() < 0.5 ? [...sides] : [...sides].reverse();
}

async function rttRounds(sides: Side[], rounds: number): Promise<Map<Side, (number | null)[]>> {
  const rtts = new Map(sides.map((s) => [s, [] as (number | null)[]]));
  for (let round = 0; round < rounds; round++) {
    for (const side of inRandomOrder(sides)) {
      rtts.get(side)!.push(await pingOnce(side));
      // Random pauses, so that no guest meets the pings at one phase of its 10 ms tick.
      await sleep(30 + Math.random() * 90);
    }
  }
  return rtts;
}

/** Replies per second of a flood ping with a deadline. */
async function flood(side: Side, others: Side[], seconds: number): Promise<number> {
  for (const o of others) o.guest!.child.kill('SIGSTOP');
  try {
    const out = await ping(side, '-q', '-f', '-w', String(seconds));
    process.stderr.write(`${side.name}: ${out.trim().split('\n').slice(-2).join(' | ')}\n`);
    return Number(/(\d+) received/.exec(out)?.[1] ?? 0) / seconds;
  } finally {
    for (const o of others) o.guest!.child.kill('SIGCONT');
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const replied = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);

/** The standard error of the ratio of mean RTTs (a / b), over blocks of BLOCK rounds; NaN under two blocks. */
function ratioStderr(a: (number | null)[], b: (number | null)[]): number {
  const blockRatios: number[] = [];
  for (let at = 0; at + BLOCK <= a.length; at += BLOCK) {
    const pa = replied(a.slice(at, at + BLOCK));
    const pb = replied(b.slice(at, at + BLOCK));
    if (pa.length && pb.length) blockRatios.push(mean(pa) / mean(pb));
  }
  if (blockRatios.length < 2) return NaN;
  const m = mean(blockRatios);
  const sd = Math.sqrt(blockRatios.reduce((s, r) => s + (r - m) ** 2, 0) / (blockRatios.length - 1));
  return sd / Math.sqrt(blockRatios.length);
}

function start(side: Side, fixture: LinuxFixture): LinuxGuest {
  return side.kind === 'vmm' ? startVmm(side) : startQemu(side, fixture);
}

function startVmm(side: Side): LinuxGuest {
  return bootLinux({ namespace: side.net, args: ['--plugin', `virtio-net=${JSON.stringify({ tap: side.net.tap, mac: GUEST_MAC })}`], cmdline: NET_CMDLINE });
}

function startQemu(side: Side, fixture: LinuxFixture): LinuxGuest {
  return spawnGuest(...side.net.wrap('qemu-system-x86_64', [
    '-M', 'microvm,acpi=off', '-enable-kvm', '-cpu', QEMU_CPU, '-m', '128M',
    '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio',
    '-netdev', `tap,id=n0,ifname=${side.net.tap},script=no,downscript=no`, '-device', `virtio-net-device,netdev=n0,mac=${GUEST_MAC}`,
    '-kernel', fixture.vmlinux, '-initrd', fixture.initramfs, '-append', `${BASE_CMDLINE} ${NET_CMDLINE}`,
  ]));
}

async function main(sides: [Side, Side]): Promise<void> {
  const rounds = positiveInteger('RTT_ROUNDS', process.argv[2] ?? '400');
  const floodSeconds = positiveInteger('FLOOD_SECONDS', process.argv[3] ?? '20');
  const fixture = linuxFixture();
  for (const side of sides) {
    side.net.create();
    const r = await side.net.run('ip', ['neigh', 'replace', GUEST_IP, 'lladdr', GUEST_MAC, 'dev', side.net.tap, 'nud', 'permanent']);
    if (r.status !== 0) throw new Error(`ip neigh replace failed: ${r.stderr.trim() || r.error}`);
  }
  const order = inRandomOrder(sides);
  for (const side of order) side.guest = start(side, fixture);
  const [a, b] = sides;
  const [ab, bb] = await Promise.all([bootFigures(a), bootFigures(b)]);
  await Promise.all(sides.map((s) => s.guest!.waitFor('Run /init as init process')));
  const rtts = await rttRounds(sides, rounds);
  const floods = new Map<Side, number>();
  for (const side of inRandomOrder(sides)) {
    floods.set(side, await flood(side, sides.filter((s) => s !== side), floodSeconds));
    await sleep(3000); // the stopped guest catches up with the time it lost
  }

  const row = (label: string, x: number, y: number, unit: string, digits = 1, extra = '') =>
    `${label.padEnd(30)} ${x.toFixed(digits).padStart(10)} ${y.toFixed(digits).padStart(10)} ${unit.padEnd(6)} ${(x / y).toFixed(2).padStart(6)}${extra}`;
  const ok = (s: Side) => replied(rtts.get(s)!);
  const stderr = ratioStderr(rtts.get(a)!, rtts.get(b)!);
  console.log(`${'linux guest (virtio-net)'.padEnd(30)} ${a.name.padStart(10)} ${b.name.padStart(10)} ${'unit'.padEnd(6)} ${'ratio'.padStart(6)}`);
  console.log(row('spawn → IP-Config: Complete', ab.ipConfig / 1000, bb.ipConfig / 1000, 's'));
  console.log(row('spawn → first ping reply', ab.firstReply / 1000, bb.firstReply / 1000, 's'));
  console.log(row(`ping RTT, mean of ${rounds}`, mean(ok(a)), mean(ok(b)), 'ms', 2, `  ± ${Number.isNaN(stderr) ? `? (under ${2 * BLOCK} rounds)` : stderr.toFixed(2)}`));
  console.log(row('ping RTT, median', median(ok(a)), median(ok(b)), 'ms', 2));
  console.log(row(`flood ping (${floodSeconds} s), replies`, floods.get(a)!, floods.get(b)!, 'pkt/s'));
  console.log(`RTT replies: ${sides.map((s) => `${s.name} ${ok(s).length}/${rounds}`).join(', ')}; ${order[0].name} started first`);
}

function positiveInteger(name: string, arg: string): number {
  const n = Number(arg);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer; got ${JSON.stringify(arg)}`);
  return n;
}

function parsePair(arg = 'vmm,qemu'): [Kind, Kind] {
  const kinds = arg.split(',');
  if (kinds.length !== 2 || !kinds.every((k) => k === 'vmm' || k === 'qemu')) {
    throw new Error(`PAIR must be two of vmm and qemu, like vmm,qemu; got ${JSON.stringify(arg)}`);
  }
  return kinds as [Kind, Kind];
}

const sides: Side[] = [];

function makeSides(): [Side, Side] {
  const [ka, kb] = parsePair(process.argv[4]);
  const same = ka === kb;
  // Distinct name prefixes: TapNamespace removes stale namespaces by prefix.
  sides.push(
    { kind: ka, name: same ? `${ka}#1` : ka, net: new TapNamespace(`${ka}bench1-${process.pid}`, 'vmmt0', HOST_IP) },
    { kind: kb, name: same ? `${kb}#2` : kb, net: new TapNamespace(`${kb}bench2-${process.pid}`, 'vmmt0', HOST_IP) },
  );
  return [sides[0], sides[1]];
}

Promise.resolve()
  .then(() => main(makeSides()))
  .catch((error) => {
    process.stderr.write(`bench/linux: ${(error as Error).message}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await Promise.all(sides.map((s) => s.guest?.stop(10_000)));
    for (const s of sides) s.net.delete();
  });
