// Everything the .cc files contribute to the module; addon.cc puts it on `exports`.
// The JavaScript contract is native/types.ts.
#pragma once

#include <napi.h>

namespace vmm {

// Per-environment state (the main thread and every worker load the addon separately).
struct AddonData {
  Napi::FunctionReference mapping;  // constructor used by mmapFd
};

// kvm.cc
Napi::Value KvmOpen(const Napi::CallbackInfo& info);
Napi::Value KvmApiVersion(const Napi::CallbackInfo& info);
Napi::Value CheckExtension(const Napi::CallbackInfo& info);
Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info);
Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
Napi::Value CreateVm(const Napi::CallbackInfo& info);
Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
Napi::Value CreatePit2(const Napi::CallbackInfo& info);
Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info);
Napi::Value IrqLine(const Napi::CallbackInfo& info);
Napi::Value Irqfd(const Napi::CallbackInfo& info);
Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
Napi::Value SetCpuid(const Napi::CallbackInfo& info);
Napi::Value GetRegs(const Napi::CallbackInfo& info);
Napi::Value SetRegs(const Napi::CallbackInfo& info);
Napi::Value GetSregs(const Napi::CallbackInfo& info);
Napi::Value SetSregs(const Napi::CallbackInfo& info);
Napi::Value SetMsrs(const Napi::CallbackInfo& info);
Napi::Value InitFpu(const Napi::CallbackInfo& info);
Napi::Value SetupLapicLint(const Napi::CallbackInfo& info);

// vcpu_runner.cc
void InstallKickHandler();
Napi::Function DefineVcpuRunner(Napi::Env env);
Napi::Value ThreadSelf(const Napi::CallbackInfo& info);
Napi::Value ThreadKick(const Napi::CallbackInfo& info);

// memory.cc
Napi::Function DefineMapping(Napi::Env env);
Napi::Value MemfdCreate(const Napi::CallbackInfo& info);
Napi::Value MmapFd(const Napi::CallbackInfo& info);

// fd.cc
Napi::Function DefineFdWatcher(Napi::Env env);
Napi::Value EventfdCreate(const Napi::CallbackInfo& info);
Napi::Value EventfdWrite(const Napi::CallbackInfo& info);
Napi::Value EventfdRead(const Napi::CallbackInfo& info);
Napi::Value Close(const Napi::CallbackInfo& info);
Napi::Value Dup(const Napi::CallbackInfo& info);
Napi::Value Pipe(const Napi::CallbackInfo& info);
Napi::Value Write(const Napi::CallbackInfo& info);
Napi::Value Read(const Napi::CallbackInfo& info);
Napi::Value SetNonBlocking(const Napi::CallbackInfo& info);
Napi::Value FileType(const Napi::CallbackInfo& info);

// socket.cc
Napi::Value UnixListen(const Napi::CallbackInfo& info);
Napi::Value UnixAccept(const Napi::CallbackInfo& info);
Napi::Value UnixConnect(const Napi::CallbackInfo& info);
Napi::Value UnixPair(const Napi::CallbackInfo& info);
Napi::Value Sendmsg(const Napi::CallbackInfo& info);
Napi::Value Recvmsg(const Napi::CallbackInfo& info);
Napi::Value PeerCred(const Napi::CallbackInfo& info);
Napi::Value Shutdown(const Napi::CallbackInfo& info);

// tap.cc
Napi::Value TapOpen(const Napi::CallbackInfo& info);
Napi::Value TapSetOffload(const Napi::CallbackInfo& info);
Napi::Value TapSetVnetHdrSize(const Napi::CallbackInfo& info);

}  // namespace vmm
