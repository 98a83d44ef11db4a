/**
 * `struct kvm_run` as the vCPU thread reads it (linux/kvm.h, x86-64 layout), and the exit
 * reasons we act on. Offsets are bytes from the start of the mapping.
 */

// linux/kvm.h: KVM_EXIT_*
export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_EXCEPTION = 1;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_DEBUG = 4;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_SYSTEM_EVENT = 24;

/** Returned by VcpuRunner.run() when a kick interrupted KVM_RUN. */
export const RUN_INTERRUPTED = -1;

// struct kvm_run header
export const RUN_EXIT_REASON = 8; // __u32 exit_reason

// union at offset 32: struct { __u8 direction; __u8 size; __u16 port; __u32 count; __u64 data_offset; } io
export const RUN_IO_DIRECTION = 32; // KVM_EXIT_IO_IN 0, KVM_EXIT_IO_OUT 1
export const RUN_IO_SIZE = 33;
export const RUN_IO_PORT = 34;
export const RUN_IO_COUNT = 36;
export const RUN_IO_DATA_OFFSET = 40;
export const KVM_EXIT_IO_OUT = 1;

// struct { __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write; } mmio
export const RUN_MMIO_PHYS_ADDR = 32;
export const RUN_MMIO_DATA = 40;
export const RUN_MMIO_LEN = 48;
export const RUN_MMIO_IS_WRITE = 52;

// struct { __u32 suberror; __u32 ndata; __u64 data[16]; } internal
export const RUN_INTERNAL_SUBERROR = 32;
export const RUN_INTERNAL_NDATA = 36;
export const RUN_INTERNAL_DATA = 40;
export const KVM_INTERNAL_ERROR_EMULATION = 1;

// struct { __u64 hardware_entry_failure_reason; __u32 cpu; } fail_entry
export const RUN_FAIL_ENTRY_REASON = 32;

// struct { __u32 type; __u32 ndata; __u64 data[16]; } system_event
export const RUN_SYSTEM_EVENT_TYPE = 32;
