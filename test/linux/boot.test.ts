/**
 * A real Linux kernel (scripts/guest-kernel's tiny 6.1 build) boots on vmm to `Run /init`,
 * through the CLI. On the nested, emulated KVM of our CI hosts this takes about 40 s
 * (shared/notes/machine.md), hence the long timeouts.
 */
import { bootLinux, LINUX_BOOT_TIMEOUT_MS, linuxFixture, type LinuxGuest } from '../helpers/linux-guest';
import { within } from '../helpers/wait';

jest.setTimeout(LINUX_BOOT_TIMEOUT_MS + 60_000);

describe('Linux guest', () => {
  let guest: LinuxGuest | undefined;
  let reboot: LinuxGuest | undefined;

  afterAll(async () => {
    await guest?.stop(5_000);
    await reboot?.stop(5_000);
  });

  it('boots to Run /init and stops cleanly on SIGTERM', async () => {
    // Fails with a message naming scripts/guest-kernel when the fixture is not built.
    const fixture = linuxFixture();
    guest = bootLinux({ fixture });
    const early = await guest.waitFor('Linux version 6.1', 60_000);
    const init = await guest.waitFor('Run /init as init process');
    process.stderr.write(`linux boot on vmm: first message ${(early / 1000).toFixed(1)} s, Run /init ${(init / 1000).toFixed(1)} s\n`);
    // The kernel must not have panicked or oopsed on the way.
    expect(guest.output()).not.toMatch(/Kernel panic|Oops|BUG:|general protection fault/);
    // The legacy ports it probes answer at once: the i8042 as absent, not as a controller that
    // never replies (which cost a second of timeouts).
    expect(guest.output()).toContain('i8042: No controller found');
    expect(guest.output()).not.toContain("Can't read CTR");
    // /init spins without system calls; the kernel stays up. Give it a moment, then stop.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(guest.output()).not.toMatch(/Kernel panic|segfault/);
    const exit = await guest.stop();
    // cli/exit-codes.ts: stopped by SIGTERM → 143.
    expect(exit).toEqual({ code: 143, signal: null });
    expect(guest.stderr()).not.toMatch(/internal error|crash/i);
  });

  it('reboots through the i8042 when it panics (panic=-1), and vmm ends with 0', async () => {
    // No init to run: Linux panics, and panic=-1 makes it restart at once. Without ACPI it
    // writes 0xfe to the i8042 command port, which vmm takes as a reset of the machine.
    reboot = bootLinux({ cmdline: 'rdinit=/nonexistent init=/nonexistent' });
    await reboot.waitFor('Kernel panic');
    const exit = await within('the reboot after the panic', reboot.exited, 60_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(reboot.output()).toMatch(/Kernel panic - not syncing: Requested init \/nonexistent failed/);
    expect(reboot.stderr()).not.toMatch(/internal error|crash/i);
  });
});
