/**
 * The exact shape of what the C++ addon (`native/src/*.cc`) exports.
 *
 * The addon is thin: each function is one system call or ioctl, checks its arguments first
 * (throwing `TypeError("Usage: name(args)")`), and turns a failing call into an `Error`
 * whose message is "<CALL> failed: <strerror>" and whose `code` is the errno name
 * (`'ENOENT'`, `'EACCES'`, `'EAGAIN'`, …), `errno` the (positive) errno number and `syscall` the
 * call name. Usage errors carry `code` `'ERR_INVALID_ARG_TYPE'`; arity is checked too, so pass
 * functions explicitly (`fds.forEach((fd) => native.close(fd))`, not `forEach(native.close)`).
 * Native errors are not `instanceof Error` in other realms (Jest): test `code`. Policy, defaults
 * and lifecycles live in TypeScript (`core/`, and the first-party plugins that own host fds).
 *
 * 64-bit quantities that may exceed 2^53 (registers, host addresses, eventfd counters) are
 * `bigint`; guest-physical addresses and sizes below 2^53 are `number`.
 */

/** One `struct kvm_cpuid_entry2`. */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** `struct kvm_regs`. */
export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}

/** `struct kvm_segment`. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** `struct kvm_dtable`. */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** `struct kvm_sregs` (the interrupt bitmap is left as the kernel has it). */
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment;
  tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint;
  apicBase: bigint;
}

/** One MSR for `KVM_SET_MSRS`. */
export interface Msr {
  index: number;
  data: bigint;
}

/** A shared mapping of a file (guest RAM is a memfd mapped `MAP_SHARED`). */
export interface Mapping {
  /** External ArrayBuffer over the mapping; detached by `close()`. */
  readonly buffer: ArrayBuffer;
  /** Host virtual address of the first byte (for `KVM_SET_USER_MEMORY_REGION`). */
  readonly address: bigint;
  readonly size: number;
  /**
   * munmap; idempotent. The buffer is detached first so JS can never touch unmapped memory.
   * Never closed, the memory is unmapped once both the Mapping and its buffer are collected.
   */
  close(): void;
}

/**
 * A vCPU as seen from the thread that runs it. Constructed on that thread (a worker) from
 * the vCPU fd; maps `struct kvm_run` and registers this thread so `kick` can interrupt it.
 */
export interface VcpuRunner {
  /**
   * `KVM_RUN` once. Returns the exit reason (`KVM_EXIT_*`), or `-1` when the call was
   * interrupted by `kick` (EINTR / immediate_exit; immediate_exit is cleared before returning).
   * Throws on any other error.
   */
  run(): number;
  /** External ArrayBuffer over `struct kvm_run` (read exit data, write `KVM_EXIT_IO`/`MMIO` read results). */
  readonly kvmRun: ArrayBuffer;
  /** Opaque id of the thread that constructed this runner, for `threadKick`. */
  readonly threadId: bigint;
  /**
   * Detach `kvmRun`, munmap kvm_run and unregister the thread; idempotent. Does not close the
   * vCPU fd. If never called, the thread is unregistered when the runner is collected or its
   * worker ends, and kvm_run is unmapped once the runner and `kvmRun` are both collected.
   */
  close(): void;
}

/**
 * Readiness watcher on the libuv loop of the calling thread (uv_poll). One per fd and thread
 * (a second throws EEXIST), and it must be closed before its fd (`close(fd)` throws EBUSY
 * meanwhile: libuv aborts the process if a polled fd disappears). While started it keeps
 * itself alive like a Node handle; a stopped, unreachable one is collected and closed. A
 * callback that throws raises `uncaughtException`.
 */
export interface FdWatcher {
  /** Start or change the watched events (`POLL_READABLE | POLL_WRITABLE`). */
  start(events: number): void;
  stop(): void;
  ref(): void;
  unref(): void;
  /** Stops and closes the uv handle (not the fd); idempotent. */
  close(): void;
}

export interface RecvResult {
  data: Buffer;
  fds: number[];
  /** MSG_TRUNC: the datagram was longer than maxLength; the rest was discarded. */
  truncated: boolean;
  /** MSG_CTRUNC: some passed fds were discarded by the kernel. */
  controlTruncated: boolean;
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export interface Native {
  // --- KVM system and VM ioctls -----------------------------------------------------------
  /** open(path, O_RDWR|O_CLOEXEC). Default path `/dev/kvm`. */
  kvmOpen(path?: string): number;
  /** KVM_GET_API_VERSION */
  kvmApiVersion(kvmFd: number): number;
  /** KVM_CHECK_EXTENSION on the system or VM fd. */
  checkExtension(fd: number, capability: number): number;
  /** KVM_GET_VCPU_MMAP_SIZE */
  vcpuMmapSize(kvmFd: number): number;
  /** KVM_GET_SUPPORTED_CPUID */
  supportedCpuid(kvmFd: number): CpuidEntry[];
  /** KVM_CREATE_VM (type 0) */
  createVm(kvmFd: number): number;
  /** KVM_SET_TSS_ADDR */
  setTssAddr(vmFd: number, address: number): void;
  /** KVM_SET_IDENTITY_MAP_ADDR (address is a u64 guest-physical address) */
  setIdentityMapAddr(vmFd: number, address: number): void;
  /** KVM_CREATE_IRQCHIP */
  createIrqchip(vmFd: number): void;
  /** KVM_CREATE_PIT2 with flags 0 (PIT speaker dummy off) */
  createPit2(vmFd: number): void;
  /** KVM_SET_USER_MEMORY_REGION (flags 0). size 0 deletes the slot. */
  setUserMemoryRegion(vmFd: number, slot: number, guestPhysAddr: number, size: number, hostAddr: bigint): void;
  /** KVM_IRQ_LINE */
  irqLine(vmFd: number, irq: number, level: number): void;
  /** KVM_IRQFD: assign (or deassign when `deassign`) eventfd → gsi. */
  irqfd(vmFd: number, eventFd: number, gsi: number, deassign?: boolean): void;
  /**
   * KVM_IOEVENTFD. `length` 0/1/2/4/8; `datamatch` undefined means any value.
   * `pio` selects KVM_IOEVENTFD_FLAG_PIO.
   */
  ioeventfd(vmFd: number, eventFd: number, address: number, length: number, pio: boolean,
    datamatch?: bigint, deassign?: boolean): void;

  // --- vCPU ioctls (callable from any thread) -------------------------------------------------
  /** KVM_CREATE_VCPU */
  createVcpu(vmFd: number, id: number): number;
  /** KVM_SET_CPUID2 */
  setCpuid(vcpuFd: number, entries: CpuidEntry[]): void;
  getRegs(vcpuFd: number): Regs;
  setRegs(vcpuFd: number, regs: Regs): void;
  getSregs(vcpuFd: number): Sregs;
  setSregs(vcpuFd: number, sregs: Sregs): void;
  /** KVM_SET_MSRS; throws if fewer than all were set. */
  setMsrs(vcpuFd: number, msrs: Msr[]): void;
  /** KVM_SET_FPU with fcw 0x37f and mxcsr 0x1f80 (the power-on values Linux expects). */
  initFpu(vcpuFd: number): void;
  /**
   * Program the local APIC LVT LINT0 as ExtINT and LINT1 as NMI (KVM_GET_LAPIC/KVM_SET_LAPIC),
   * as the legacy PIC wiring requires.
   */
  setupLapicLint(vcpuFd: number): void;
  /** Construct on the thread that will call `run()`. `mmapSize` from `vcpuMmapSize`. */
  VcpuRunner: new (vcpuFd: number, mmapSize: number) => VcpuRunner;
  /** Id of the calling thread (same as VcpuRunner.threadId). */
  threadSelf(): bigint;
  /** Interrupt `KVM_RUN` on that thread (signal + immediate_exit); harmless if it is not in KVM_RUN. */
  threadKick(threadId: bigint): void;

  // --- memory ----------------------------------------------------------------------------
  /** memfd_create(name, MFD_CLOEXEC|MFD_ALLOW_SEALING) then ftruncate(size). */
  memfdCreate(name: string, size: number): number;
  /** mmap(fd, size, PROT_READ|PROT_WRITE, MAP_SHARED, offset). */
  mmapFd(fd: number, size: number, offset?: number): Mapping;

  // --- fds, eventfd, polling ---------------------------------------------------------------
  /** eventfd(initial, EFD_CLOEXEC|EFD_NONBLOCK). */
  eventfdCreate(initial?: number): number;
  eventfdWrite(fd: number, value: bigint): void;
  /** Returns the counter, or null when it is zero (EAGAIN). */
  eventfdRead(fd: number): bigint | null;
  /** close(2); throws on EBADF, and EBUSY while an FdWatcher is open on the fd. */
  close(fd: number): void;
  /** fcntl(fd, F_DUPFD_CLOEXEC, 0): a new fd (the lowest free number) for the same open file. */
  dup(fd: number): number;
  /** pipe2(O_CLOEXEC|O_NONBLOCK): [readFd, writeFd]. */
  pipe(): [number, number];
  /** write(2) of the whole buffer or less; returns bytes written, or -1 on EAGAIN. */
  write(fd: number, data: Uint8Array): number;
  /** read(2) up to maxLength; returns the bytes (length 0 = EOF), or null on EAGAIN. */
  read(fd: number, maxLength: number): Buffer | null;
  /** fcntl F_SETFL O_NONBLOCK on or off. */
  setNonBlocking(fd: number, on: boolean): void;
  /** fstat st_mode & S_IFMT (to tell sockets, pipes, memfds apart). */
  fileType(fd: number): number;
  /** Calls back on the calling thread's loop with the ready events. Starts stopped. */
  FdWatcher: new (fd: number, callback: (events: number, status: number) => void) => FdWatcher;
  POLL_READABLE: number;
  POLL_WRITABLE: number;
  POLL_DISCONNECT: number;

  // --- Unix sockets --------------------------------------------------------------------------
  /**
   * socket(AF_UNIX, type|SOCK_CLOEXEC|SOCK_NONBLOCK) + bind(path) + listen(backlog) (no listen
   * for SOCK_DGRAM). With `mode` (0 to 0o777) the socket file gets exactly that mode: fchmod of
   * the socket before bind (so the file is born with at most `mode & ~umask`), then chmod(path)
   * after it; the process umask is not touched. If chmod or listen fails, the file is unlinked.
   * Without `mode` the file has 0777 & ~umask.
   */
  unixListen(path: string, type: number, backlog: number, mode?: number): number;
  /** accept4(SOCK_CLOEXEC|SOCK_NONBLOCK); null on EAGAIN. */
  unixAccept(fd: number): number | null;
  /** socket + connect (blocking connect, then the fd is set non-blocking). */
  unixConnect(path: string, type: number, wait?: true): number;
  /** A connect that never blocks: null when the listener's backlog is full (EAGAIN); no fd is left. */
  unixConnect(path: string, type: number, wait: false): number | null;
  /** socketpair(AF_UNIX, type|SOCK_CLOEXEC|SOCK_NONBLOCK). */
  unixPair(type: number): [number, number];
  /** sendmsg with SCM_RIGHTS when fds is non-empty, flags MSG_NOSIGNAL|MSG_DONTWAIT; -1 on EAGAIN. */
  sendmsg(fd: number, data: Uint8Array, fds: number[]): number;
  /**
   * recvmsg with MSG_CMSG_CLOEXEC|MSG_DONTWAIT (never read(2)); null on EAGAIN. `data` is a
   * Buffer of exactly the received length (received into a reused per-thread scratch buffer, so
   * a large maxLength costs no allocation or zero-fill per call). `fds` holds every
   * fd received, possibly more than maxFds (the kernel fills the control buffer's padding).
   * On SOCK_SEQPACKET an empty `data` is either an empty datagram or EOF: tell them apart with
   * POLL_DISCONNECT or a follow-up read.
   */
  recvmsg(fd: number, maxLength: number, maxFds: number): RecvResult | null;
  /** SO_PEERCRED */
  peerCred(fd: number): PeerCred;
  /** shutdown(2): 'read' SHUT_RD, 'write' SHUT_WR, 'both' (default) SHUT_RDWR. */
  shutdown(fd: number, how?: 'read' | 'write' | 'both'): void;
  SOCK_STREAM: number;
  SOCK_SEQPACKET: number;
  SOCK_DGRAM: number;

  // --- TAP -----------------------------------------------------------------------------------
  /** open /dev/net/tun, TUNSETIFF IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (name may be '' for kernel-chosen). */
  tapOpen(name: string): { fd: number; name: string };
  /** TUNSETOFFLOAD */
  tapSetOffload(fd: number, flags: number): void;
  /** TUNSETVNETHDRSZ */
  tapSetVnetHdrSize(fd: number, size: number): void;
}
