/**
 * Linux with real user space on vmm, through the CLI: the guest's busybox shell on the serial
 * console (test/helpers/linux-console.ts drives it), static and dynamically linked programs,
 * signals, a crashing program, and every way the VM ends: SIGTERM while the guest spins in user
 * space, `poweroff` in the shell, a kernel panic with panic=-1. On the nested, emulated KVM of our
 * CI hosts a boot to the shell takes 15–40 s (shared/notes/machine.md), hence the timeouts.
 */
import { bootLinux, LINUX_BOOT_TIMEOUT_MS, linuxFixture, type LinuxGuest } from '../helpers/linux-guest';
import { LinuxConsole } from '../helpers/linux-console';
import { within } from '../helpers/wait';

jest.setTimeout(LINUX_BOOT_TIMEOUT_MS + 120_000);

/** What a healthy run never prints on the console. */
const KERNEL_TROUBLE = /Kernel panic|Oops|BUG:|general protection fault|Call Trace/;

describe('Linux shell on the console', () => {
  let shell: LinuxConsole;

  beforeAll(async () => {
    linuxFixture(); // fails with a message naming scripts/guest-kernel when it is not built
    shell = await LinuxConsole.boot();
    process.stderr.write(`linux on vmm: shell prompt at ${(shell.bootedAt / 1000).toFixed(1)} s\n`);
  });

  afterAll(async () => {
    await shell?.stop(5_000);
  });

  it('boots to a shell without kernel trouble, probing the legacy ports quickly', () => {
    expect(shell.output()).toContain('Run /init as init process');
    expect(shell.output()).not.toMatch(KERNEL_TROUBLE);
    // The i8042 answers as absent, not as a controller that never replies (a second of timeouts).
    expect(shell.output()).toContain('i8042: No controller found');
    expect(shell.output()).not.toContain("Can't read CTR");
  });

  it('runs uname, a pipeline, fork/exec with exit statuses, and mounts what init mounted', async () => {
    expect(await shell.ok('uname -sm')).toBe('Linux x86_64\n');
    expect(await shell.ok('uname -r')).toMatch(/^6\.1\./);
    expect(await shell.ok("echo one two three | tr ' ' '\\n' | sort -r | head -n 2")).toBe('two\nthree\n');
    expect(await shell.run("sh -c 'echo child; exit 7'")).toEqual({ output: 'child\n', status: 7 });
    expect(await shell.run('false')).toEqual({ output: '', status: 1 });
    expect(await shell.run('ls /nonexistent')).toMatchObject({ status: 1, output: expect.stringMatching(/No such file/) });
    const mounts = await shell.ok('cat /proc/mounts');
    for (const fs of ['proc /proc', 'sysfs /sys', 'devtmpfs /dev', 'tmpfs /tmp']) expect(mounts).toContain(fs);
    expect(await shell.ok('cat /sys/class/net/lo/operstate')).toMatch(/^(unknown|up)\n$/);
    // A file through tmpfs, written and read back by separate processes.
    expect(await shell.ok('echo data > /tmp/f && wc -c < /tmp/f')).toBe('5\n');
  });

  it('delivers signals: kill ends a background job, a trapped signal runs its handler', async () => {
    // USR1, not TERM: an interactive ash ignores SIGTERM, and its background jobs inherit that.
    // The shell reports the job's death ("User defined signal 1") before the status.
    expect(await shell.ok('cpu spin > /dev/null & kill -USR1 $!; wait $!; echo "status $?"')).toMatch(/(^|\n)status 138\n$/);
    expect(await shell.run(`sh -c 'trap "echo got USR1; exit 3" USR1; kill -USR1 $$; sleep 30'`)).toEqual({ output: 'got USR1\n', status: 3 });
  });

  it('runs a static C program built for the guest (system calls through the patched kernel)', async () => {
    const out = await shell.ok('cpu syscalls 100');
    expect(out).toMatch(/^100 getppid\(\) in [\d.]+ ms, [\d.]+ ms each\n$/);
    process.stderr.write(`guest: ${out}`);
    expect(await shell.run('cpu syscalls x')).toMatchObject({ status: 2, output: expect.stringContaining('usage: cpu spin') });
  });

  it('runs dynamically linked Debian programs with the libraries copied from the host', async () => {
    // coreutils' b2sum (BLAKE2b-512 of "abc", RFC 7693 appendix A).
    expect(await shell.ok('printf abc | b2sum')).toBe(
      'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923  -\n');
    // The guest's own dynamic loader resolves the libraries from the initramfs.
    const libs = await shell.ok('/lib64/ld-linux-x86-64.so.2 --list /usr/bin/wayland-info');
    expect(libs).toMatch(/libwayland-client\.so\.0 => \/lib\/x86_64-linux-gnu\/libwayland-client\.so\.0/);
    expect(libs).toMatch(/libc\.so\.6 => \/lib\/x86_64-linux-gnu\/libc\.so\.6/);
    // wayland-info starts, and fails only for want of a display.
    const wayland = await shell.run('wayland-info');
    expect(wayland.status).not.toBe(0);
    expect(wayland.output).toMatch(/failed to create display|XDG_RUNTIME_DIR/);
    expect(wayland.output).not.toMatch(/error while loading shared libraries|not found/);
  });

  it('survives a program that segfaults: the shell reports SIGSEGV and carries on', async () => {
    const crashed = await shell.run('cpu segfault');
    expect(crashed.status).toBe(139); // 128 + SIGSEGV
    expect(crashed.output).toContain('writing to address 0');
    expect(await shell.ok('echo still here')).toBe('still here\n');
    expect(shell.guest.child.exitCode).toBeNull();
  });

  it('stops promptly on SIGTERM while the guest spins at 100 % in user space', async () => {
    shell.type('cpu spin');
    await shell.guest.waitFor('spinning', 30_000, shell.output().length);
    // Let it spin a while: the vCPU is then busy in guest user mode, not halted.
    await new Promise((r) => setTimeout(r, 2_000));
    const asked = performance.now();
    shell.guest.child.kill('SIGTERM');
    const exit = await within('vmm exiting after SIGTERM', shell.guest.exited, 10_000);
    process.stderr.write(`SIGTERM with a spinning guest: vmm exited after ${(performance.now() - asked).toFixed(0)} ms\n`);
    expect(exit).toEqual({ code: 143, signal: null }); // cli/exit-codes.ts: stopped by SIGTERM
    expect(shell.guest.stderr()).not.toMatch(/internal error|crash/i);
  });
});

describe('Linux guest: how it ends', () => {
  const guests: LinuxGuest[] = [];

  afterAll(async () => {
    await Promise.all(guests.map((g) => g.stop(5_000)));
  });

  it('poweroff in the shell ends vmm with exit status 0', async () => {
    const shell = await LinuxConsole.boot();
    guests.push(shell.guest);
    shell.type('poweroff');
    expect(await within('vmm exiting after poweroff', shell.guest.exited, 60_000)).toEqual({ code: 0, signal: null });
    expect(shell.output()).toContain('reboot: Restarting system');
    expect(shell.output()).not.toMatch(KERNEL_TROUBLE);
  });

  it('a kernel panic with panic=-1 reboots through the i8042, and vmm exits 0 (guest_cmd from the command line)', async () => {
    const guest = bootLinux({ cmdline: `guest_cmd="echo guest_cmd ran as $((6*7)); echo c > /proc/sysrq-trigger"` });
    guests.push(guest);
    await guest.waitFor('guest_cmd ran as 42');
    await guest.waitFor('Kernel panic');
    expect(await within('the reboot after the panic', guest.exited, 60_000)).toEqual({ code: 0, signal: null });
    expect(guest.output()).toMatch(/Kernel panic - not syncing: sysrq triggered crash/);
    expect(guest.stderr()).not.toMatch(/internal error|crash/i);
  });
});
