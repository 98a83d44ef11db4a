// KVM system, VM and vCPU ioctls: one ioctl per function, kernel structs converted field by field.
#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstring>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "kvm_uapi.h"

namespace vmm {
namespace {

// The request's name is the failing call in error messages ("KVM_CREATE_VM failed: ...").
#define IOCTL(env, fd, request, arg) \
  Check(env, RetryEintr([&] { return ioctl(fd, request, arg); }), #request)

// A kernel struct ending in a flexible array (kvm_cpuid2, kvm_msrs), zeroed, with room for n entries.
template <typename T, typename Entry>
class Flexible {
 public:
  explicit Flexible(size_t n) : storage_((sizeof(T) + n * sizeof(Entry) + 7) / 8) {}
  T* operator->() { return reinterpret_cast<T*>(storage_.data()); }
  T* get() { return reinterpret_cast<T*>(storage_.data()); }

 private:
  std::vector<uint64_t> storage_;  // uint64_t keeps the struct aligned
};

Napi::Value Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }
Napi::Value Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }
Napi::Value Undefined(Napi::Env env) { return env.Undefined(); }

#define KVM_REGS(X) X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) \
  X(r10) X(r11) X(r12) X(r13) X(r14) X(r15) X(rip) X(rflags)
#define KVM_SEGMENT_BYTES(X) X(type) X(present) X(dpl) X(db) X(s) X(l) X(g) X(avl) X(unusable)
#define KVM_SREGS_SEGMENTS(X) X(cs) X(ds) X(es) X(fs) X(gs) X(ss) X(tr) X(ldt)
#define KVM_SREGS_TABLES(X) X(gdt) X(idt)
#define KVM_SREGS_U64(X) X(cr0) X(cr2) X(cr3) X(cr4) X(cr8) X(efer)

Napi::Object SegmentToJs(Napi::Env env, const kvm_segment& seg) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("base", Big(env, seg.base));
  o.Set("limit", Num(env, seg.limit));
  o.Set("selector", Num(env, seg.selector));
#define X(f) o.Set(#f, Num(env, seg.f));
  KVM_SEGMENT_BYTES(X)
#undef X
  return o;
}

kvm_segment SegmentFromJs(const Args& args, Napi::Value v, const std::string& name) {
  Napi::Object o = args.ObjOf(v, name);
  kvm_segment seg{};
  seg.base = args.BigU64(o.Get("base"), name + ".base");
  seg.limit = args.Integer(o.Get("limit"), name + ".limit", 0, UINT32_MAX);
  seg.selector = args.Integer(o.Get("selector"), name + ".selector", 0, UINT16_MAX);
#define X(f) seg.f = args.Integer(o.Get(#f), name + "." #f, 0, UINT8_MAX);
  KVM_SEGMENT_BYTES(X)
#undef X
  return seg;
}

Napi::Object TableToJs(Napi::Env env, const kvm_dtable& table) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("base", Big(env, table.base));
  o.Set("limit", Num(env, table.limit));
  return o;
}

kvm_dtable TableFromJs(const Args& args, Napi::Value v, const std::string& name) {
  Napi::Object o = args.ObjOf(v, name);
  kvm_dtable table{};
  table.base = args.BigU64(o.Get("base"), name + ".base");
  table.limit = args.Integer(o.Get("limit"), name + ".limit", 0, UINT16_MAX);
  return table;
}

#define KVM_CPUID_FIELDS(X) X(function) X(index) X(flags) X(eax) X(ebx) X(ecx) X(edx)

// Local APIC register offsets and LVT delivery modes (Intel SDM vol. 3, 11.5.1).
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kLvtDeliveryModeMask = 0x700;
constexpr uint32_t kLvtDeliveryExtInt = 0x700;
constexpr uint32_t kLvtDeliveryNmi = 0x400;

// x87 control word and MXCSR at power-on (all exceptions masked).
constexpr uint16_t kFpuControlWord = 0x37f;
constexpr uint32_t kMxcsr = 0x1f80;

}  // namespace

Napi::Value KvmOpen(const Napi::CallbackInfo& info) {
  Args args(info, "kvmOpen(path?)");
  std::string path = args.Has(0) ? args.Str(0) : "/dev/kvm";
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    try {
      ThrowErrno(info.Env(), "open", err);
    } catch (Napi::Error& e) {
      e.Value().Set("path", Napi::String::New(info.Env(), path));  // so TypeScript can say which device node is missing or denied
      throw;
    }
  }
  return Num(info.Env(), fd);
}

Napi::Value KvmApiVersion(const Napi::CallbackInfo& info) {
  Args args(info, "kvmApiVersion(kvmFd)");
  return Num(info.Env(), IOCTL(info.Env(), args.Fd(0), KVM_GET_API_VERSION, 0));
}

Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  Args args(info, "checkExtension(fd, capability)");
  int fd = args.Fd(0);
  unsigned long capability = args.U32(1);
  return Num(info.Env(), IOCTL(info.Env(), fd, KVM_CHECK_EXTENSION, capability));
}

Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info) {
  Args args(info, "vcpuMmapSize(kvmFd)");
  return Num(info.Env(), IOCTL(info.Env(), args.Fd(0), KVM_GET_VCPU_MMAP_SIZE, 0));
}

Napi::Value SupportedCpuid(const Napi::CallbackInfo& info) {
  Args args(info, "supportedCpuid(kvmFd)");
  int fd = args.Fd(0);
  Napi::Env env = info.Env();
  // The kernel only says "too small" (E2BIG), so grow until the table fits.
  for (uint32_t n = 100;; n *= 2) {
    Flexible<kvm_cpuid2, kvm_cpuid_entry2> cpuid(n);
    cpuid->nent = n;
    if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, cpuid.get()) < 0) {
      if (errno == E2BIG && n < 65536) continue;
      ThrowErrno(env, "KVM_GET_SUPPORTED_CPUID");
    }
    Napi::Array result = Napi::Array::New(env, cpuid->nent);
    for (uint32_t i = 0; i < cpuid->nent; i++) {
      const kvm_cpuid_entry2& e = cpuid->entries[i];
      Napi::Object o = Napi::Object::New(env);
#define X(f) o.Set(#f, Num(env, e.f));
      KVM_CPUID_FIELDS(X)
#undef X
      result.Set(i, o);
    }
    return result;
  }
}

Napi::Value CreateVm(const Napi::CallbackInfo& info) {
  Args args(info, "createVm(kvmFd)");
  // KVM creates VM and vCPU fds with O_CLOEXEC itself.
  return Num(info.Env(), IOCTL(info.Env(), args.Fd(0), KVM_CREATE_VM, 0));
}

Napi::Value SetTssAddr(const Napi::CallbackInfo& info) {
  Args args(info, "setTssAddr(vmFd, address)");
  int fd = args.Fd(0);
  unsigned long address = args.Safe(1);
  IOCTL(info.Env(), fd, KVM_SET_TSS_ADDR, address);
  return Undefined(info.Env());
}

Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  Args args(info, "setIdentityMapAddr(vmFd, address)");
  int fd = args.Fd(0);
  uint64_t address = args.Safe(1);
  IOCTL(info.Env(), fd, KVM_SET_IDENTITY_MAP_ADDR, &address);
  return Undefined(info.Env());
}

Napi::Value CreateIrqchip(const Napi::CallbackInfo& info) {
  Args args(info, "createIrqchip(vmFd)");
  IOCTL(info.Env(), args.Fd(0), KVM_CREATE_IRQCHIP, 0);
  return Undefined(info.Env());
}

Napi::Value CreatePit2(const Napi::CallbackInfo& info) {
  Args args(info, "createPit2(vmFd)");
  kvm_pit_config config{};
  IOCTL(info.Env(), args.Fd(0), KVM_CREATE_PIT2, &config);
  return Undefined(info.Env());
}

Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  Args args(info, "setUserMemoryRegion(vmFd, slot, guestPhysAddr, size, hostAddr)");
  int fd = args.Fd(0);
  kvm_userspace_memory_region region{};
  region.slot = args.U32(1);
  region.guest_phys_addr = args.Safe(2);
  region.memory_size = args.Safe(3);
  region.userspace_addr = args.Big(4);
  IOCTL(info.Env(), fd, KVM_SET_USER_MEMORY_REGION, &region);
  return Undefined(info.Env());
}

Napi::Value IrqLine(const Napi::CallbackInfo& info) {
  Args args(info, "irqLine(vmFd, irq, level)");
  int fd = args.Fd(0);
  kvm_irq_level line{};
  line.irq = args.U32(1);
  line.level = args.U32(2);
  IOCTL(info.Env(), fd, KVM_IRQ_LINE, &line);
  return Undefined(info.Env());
}

Napi::Value Irqfd(const Napi::CallbackInfo& info) {
  Args args(info, "irqfd(vmFd, eventFd, gsi, deassign?)");
  int fd = args.Fd(0);
  kvm_irqfd irqfd{};
  irqfd.fd = args.Fd(1);
  irqfd.gsi = args.U32(2);
  if (args.Has(3) && args.Bool(3)) irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  IOCTL(info.Env(), fd, KVM_IRQFD, &irqfd);
  return Undefined(info.Env());
}

Napi::Value Ioeventfd(const Napi::CallbackInfo& info) {
  Args args(info, "ioeventfd(vmFd, eventFd, address, length, pio, datamatch?, deassign?)");
  int fd = args.Fd(0);
  kvm_ioeventfd ioeventfd{};
  ioeventfd.fd = args.Fd(1);
  ioeventfd.addr = args.Safe(2);
  ioeventfd.len = args.U32(3);
  if (args.Bool(4)) ioeventfd.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (args.Has(5)) {
    ioeventfd.datamatch = args.Big(5);
    ioeventfd.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  if (args.Has(6) && args.Bool(6)) ioeventfd.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  IOCTL(info.Env(), fd, KVM_IOEVENTFD, &ioeventfd);
  return Undefined(info.Env());
}

Napi::Value CreateVcpu(const Napi::CallbackInfo& info) {
  Args args(info, "createVcpu(vmFd, id)");
  int fd = args.Fd(0);
  unsigned long id = args.U32(1);
  return Num(info.Env(), IOCTL(info.Env(), fd, KVM_CREATE_VCPU, id));
}

Napi::Value SetCpuid(const Napi::CallbackInfo& info) {
  Args args(info, "setCpuid(vcpuFd, entries)");
  int fd = args.Fd(0);
  Napi::Array entries = args.Arr(1);
  Flexible<kvm_cpuid2, kvm_cpuid_entry2> cpuid(entries.Length());
  cpuid->nent = entries.Length();
  for (uint32_t i = 0; i < entries.Length(); i++) {
    std::string name = "entries[" + std::to_string(i) + "]";
    Napi::Object o = args.ObjOf(entries.Get(i), name);
    kvm_cpuid_entry2& e = cpuid->entries[i];
#define X(f) e.f = args.Integer(o.Get(#f), name + "." #f, 0, UINT32_MAX);
    KVM_CPUID_FIELDS(X)
#undef X
  }
  IOCTL(info.Env(), fd, KVM_SET_CPUID2, cpuid.get());
  return Undefined(info.Env());
}

Napi::Value GetRegs(const Napi::CallbackInfo& info) {
  Args args(info, "getRegs(vcpuFd)");
  Napi::Env env = info.Env();
  kvm_regs regs{};
  IOCTL(env, args.Fd(0), KVM_GET_REGS, &regs);
  Napi::Object o = Napi::Object::New(env);
#define X(f) o.Set(#f, Big(env, regs.f));
  KVM_REGS(X)
#undef X
  return o;
}

Napi::Value SetRegs(const Napi::CallbackInfo& info) {
  Args args(info, "setRegs(vcpuFd, regs)");
  int fd = args.Fd(0);
  Napi::Object o = args.Obj(1);
  kvm_regs regs{};
#define X(f) regs.f = args.BigU64(o.Get(#f), "regs." #f);
  KVM_REGS(X)
#undef X
  IOCTL(info.Env(), fd, KVM_SET_REGS, &regs);
  return Undefined(info.Env());
}

Napi::Value GetSregs(const Napi::CallbackInfo& info) {
  Args args(info, "getSregs(vcpuFd)");
  Napi::Env env = info.Env();
  kvm_sregs sregs{};
  IOCTL(env, args.Fd(0), KVM_GET_SREGS, &sregs);
  Napi::Object o = Napi::Object::New(env);
#define X(f) o.Set(#f, SegmentToJs(env, sregs.f));
  KVM_SREGS_SEGMENTS(X)
#undef X
#define X(f) o.Set(#f, TableToJs(env, sregs.f));
  KVM_SREGS_TABLES(X)
#undef X
#define X(f) o.Set(#f, Big(env, sregs.f));
  KVM_SREGS_U64(X)
#undef X
  o.Set("apicBase", Big(env, sregs.apic_base));
  return o;
}

Napi::Value SetSregs(const Napi::CallbackInfo& info) {
  Args args(info, "setSregs(vcpuFd, sregs)");
  int fd = args.Fd(0);
  Napi::Object o = args.Obj(1);
  kvm_sregs given{};
#define X(f) given.f = SegmentFromJs(args, o.Get(#f), "sregs." #f);
  KVM_SREGS_SEGMENTS(X)
#undef X
#define X(f) given.f = TableFromJs(args, o.Get(#f), "sregs." #f);
  KVM_SREGS_TABLES(X)
#undef X
#define X(f) given.f = args.BigU64(o.Get(#f), "sregs." #f);
  KVM_SREGS_U64(X)
#undef X
  given.apic_base = args.BigU64(o.Get("apicBase"), "sregs.apicBase");

  // The pending-interrupt bitmap is not part of Sregs: keep what the kernel has.
  kvm_sregs current{};
  IOCTL(info.Env(), fd, KVM_GET_SREGS, &current);
  std::memcpy(given.interrupt_bitmap, current.interrupt_bitmap, sizeof given.interrupt_bitmap);
  IOCTL(info.Env(), fd, KVM_SET_SREGS, &given);
  return Undefined(info.Env());
}

Napi::Value SetMsrs(const Napi::CallbackInfo& info) {
  Args args(info, "setMsrs(vcpuFd, msrs)");
  int fd = args.Fd(0);
  Napi::Array list = args.Arr(1);
  uint32_t n = list.Length();
  Flexible<kvm_msrs, kvm_msr_entry> msrs(n);
  msrs->nmsrs = n;
  for (uint32_t i = 0; i < n; i++) {
    std::string name = "msrs[" + std::to_string(i) + "]";
    Napi::Object o = args.ObjOf(list.Get(i), name);
    msrs->entries[i].index = args.Integer(o.Get("index"), name + ".index", 0, UINT32_MAX);
    msrs->entries[i].data = args.BigU64(o.Get("data"), name + ".data");
  }
  // The kernel stops at the first MSR it rejects and returns how many it set.
  int set = IOCTL(info.Env(), fd, KVM_SET_MSRS, msrs.get());
  if (static_cast<uint32_t>(set) < n) {
    char detail[64];
    snprintf(detail, sizeof detail, "MSR 0x%x rejected (%d of %u set)", msrs->entries[set].index, set, n);
    ThrowErrno(info.Env(), "KVM_SET_MSRS", EINVAL, detail);
  }
  return Undefined(info.Env());
}

Napi::Value InitFpu(const Napi::CallbackInfo& info) {
  Args args(info, "initFpu(vcpuFd)");
  kvm_fpu fpu{};
  fpu.fcw = kFpuControlWord;
  fpu.mxcsr = kMxcsr;
  IOCTL(info.Env(), args.Fd(0), KVM_SET_FPU, &fpu);
  return Undefined(info.Env());
}

Napi::Value SetupLapicLint(const Napi::CallbackInfo& info) {
  Args args(info, "setupLapicLint(vcpuFd)");
  int fd = args.Fd(0);
  kvm_lapic_state lapic{};
  IOCTL(info.Env(), fd, KVM_GET_LAPIC, &lapic);
  auto set_delivery_mode = [&](size_t offset, uint32_t mode) {
    uint32_t lvt;
    std::memcpy(&lvt, lapic.regs + offset, sizeof lvt);
    lvt = (lvt & ~kLvtDeliveryModeMask) | mode;
    std::memcpy(lapic.regs + offset, &lvt, sizeof lvt);
  };
  // The legacy PIC's INTR reaches LINT0 (ExtINT); NMIs come in on LINT1.
  set_delivery_mode(kApicLvtLint0, kLvtDeliveryExtInt);
  set_delivery_mode(kApicLvtLint1, kLvtDeliveryNmi);
  IOCTL(info.Env(), fd, KVM_SET_LAPIC, &lapic);
  return Undefined(info.Env());
}

}  // namespace vmm
