/**
 * CPU time of a VMM process, thread by thread, from /proc/PID/task/TID/stat (proc(5)): what its
 * vCPU threads spend (the guest, and KVM's exits handled in the kernel on their behalf) apart
 * from what the VMM itself spends outside them (device emulation, the event loop, I/O threads).
 *
 * A vCPU thread is one with guest time (field 43, time spent running a guest under KVM): that
 * tells them apart in any VMM without relying on names (QEMU names them "CPU 0/KVM"; vmm's are
 * Node worker threads).
 */
import * as fs from 'fs';

/** USER_HZ: the unit of the times in /proc/PID/stat (sysconf(_SC_CLK_TCK), 100 on Linux x86). */
export const CLOCK_TICKS_PER_SECOND = 100;

export interface ThreadTimes {
  tid: number;
  name: string;
  /** User time, guest time included (proc(5)), in seconds. */
  user: number;
  /** System time in seconds. */
  system: number;
  /** Time spent running the guest (vCPU threads only), in seconds. */
  guest: number;
}

/** One snapshot of every thread of `pid`; threads that exit while it is read are left out. */
export function threadTimes(pid: number): ThreadTimes[] {
  const out: ThreadTimes[] = [];
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch (error) {
    throw new Error(`cannot read the threads of process ${pid}: ${(error as Error).message}`);
  }
  for (const tid of tids) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "TID (COMM) STATE …": COMM may hold spaces and parentheses, so split after the last ')'.
    const close = stat.lastIndexOf(')');
    const name = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    // fields[0] is field 3 (state): field N is fields[N - 3].
    const ticks = (n: number) => Number(fields[n - 3]) / CLOCK_TICKS_PER_SECOND;
    out.push({ tid: Number(tid), name, user: ticks(14), system: ticks(15), guest: ticks(43) });
  }
  return out;
}

export interface ProcessCpu {
  /** CPU seconds of the vCPU threads (user + system, guest time included). */
  vcpu: number;
  /** CPU seconds of every other thread: what the VMM itself spends. */
  other: number;
  /** Of `vcpu`, the seconds spent running the guest. */
  guest: number;
}

const isVcpu = (t: ThreadTimes) => t.guest > 0 || /^CPU \d+\/KVM$/.test(t.name);

/** Sums a snapshot (CPU time since each thread started) into vCPU threads and the rest. */
export function processCpu(threads: ThreadTimes[]): ProcessCpu {
  return cpuSince(threads, []);
}

/**
 * CPU used between two snapshots of one process (threads born in between count from zero). A
 * vCPU thread is known by its guest time over its whole life, not only in the interval.
 */
export function cpuSince(now: ThreadTimes[], before: ThreadTimes[]): ProcessCpu {
  const earlier = new Map(before.map((t) => [t.tid, t]));
  const cpu = { vcpu: 0, other: 0, guest: 0 };
  for (const t of now) {
    const b = earlier.get(t.tid);
    const used = t.user + t.system - (b ? b.user + b.system : 0);
    if (isVcpu(t)) {
      cpu.vcpu += used;
      cpu.guest += t.guest - (b?.guest ?? 0);
    } else cpu.other += used;
  }
  return cpu;
}

/** Resident memory of a process in KiB: VmRSS from /proc/PID/status and Pss from smaps_rollup (null if unreadable). */
export function residentMemory(pid: number): { rssKiB: number; pssKiB: number | null } {
  const field = (text: string, name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const rss = field(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS');
  if (rss === null) throw new Error(`process ${pid} has no VmRSS (a zombie?)`);
  let pss: number | null = null;
  try {
    pss = field(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss');
  } catch {
    // smaps_rollup needs Linux 4.14 and ptrace access; RSS alone then.
  }
  return { rssKiB: rss, pssKiB: pss };
}
