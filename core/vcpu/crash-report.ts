/** Turns a dead vCPU into a message a user can act on: what happened and the registers. */
import { native } from '../../native';
import { KVM_EXIT_INTERNAL_ERROR, RUN_EXIT_REASON, RUN_INTERNAL_DATA, RUN_INTERNAL_NDATA } from './kvm-run';

const hex = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

export function formatCrash(vcpuFd: number, vcpu: number, what: string, run: DataView): string {
  const lines = [`the guest crashed on vCPU ${vcpu}: ${what}.`];
  try {
    const r = native.getRegs(vcpuFd);
    const s = native.getSregs(vcpuFd);
    const regs: [string, bigint][] = [
      ['rip', r.rip], ['rsp', r.rsp], ['rflags', r.rflags], ['rax', r.rax], ['rbx', r.rbx], ['rcx', r.rcx],
      ['rdx', r.rdx], ['rsi', r.rsi], ['rdi', r.rdi], ['rbp', r.rbp], ['r8', r.r8], ['r9', r.r9],
      ['r10', r.r10], ['r11', r.r11], ['r12', r.r12], ['r13', r.r13], ['r14', r.r14], ['r15', r.r15],
      ['cr0', s.cr0], ['cr2', s.cr2], ['cr3', s.cr3], ['cr4', s.cr4], ['efer', s.efer],
    ];
    for (let i = 0; i < regs.length; i += 3) {
      lines.push(regs.slice(i, i + 3).map(([n, v]) => `${n.padStart(6)}=${hex(v)}`).join(' '));
    }
    lines.push(`    cs=0x${s.cs.selector.toString(16)} (dpl ${s.cs.dpl}, ${s.cs.l ? '64-bit' : s.cs.db ? '32-bit' : '16-bit'})`
      + ` ss=0x${s.ss.selector.toString(16)} gdt=0x${s.gdt.base.toString(16)}/${s.gdt.limit} idt=0x${s.idt.base.toString(16)}/${s.idt.limit}`);
  } catch (error) {
    lines.push(`(registers unavailable: ${(error as Error).message})`);
  }
  if (run.getUint32(RUN_EXIT_REASON, true) === KVM_EXIT_INTERNAL_ERROR) {
    const n = Math.min(run.getUint32(RUN_INTERNAL_NDATA, true), 16);
    const words = Array.from({ length: n }, (_, i) => hex(run.getBigUint64(RUN_INTERNAL_DATA + 8 * i, true)));
    if (n > 0) lines.push(`  internal error data: ${words.join(' ')}`);
  }
  return lines.join('\n');
}
