// Module init: the exported names, in the order of native/types.ts.
#include <sys/socket.h>
#include <uv.h>

#include "addon.h"

namespace vmm {
namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallKickHandler();
  env.SetInstanceData(new AddonData{Napi::Persistent(DefineMapping(env))});

  auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, f, name));
  };
  auto constant = [&](const char* name, int value) { exports.Set(name, Napi::Number::New(env, value)); };

  fn("kvmOpen", KvmOpen);
  fn("kvmApiVersion", KvmApiVersion);
  fn("checkExtension", CheckExtension);
  fn("vcpuMmapSize", VcpuMmapSize);
  fn("supportedCpuid", SupportedCpuid);
  fn("createVm", CreateVm);
  fn("setTssAddr", SetTssAddr);
  fn("setIdentityMapAddr", SetIdentityMapAddr);
  fn("createIrqchip", CreateIrqchip);
  fn("createPit2", CreatePit2);
  fn("setUserMemoryRegion", SetUserMemoryRegion);
  fn("irqLine", IrqLine);
  fn("irqfd", Irqfd);
  fn("ioeventfd", Ioeventfd);

  fn("createVcpu", CreateVcpu);
  fn("setCpuid", SetCpuid);
  fn("getRegs", GetRegs);
  fn("setRegs", SetRegs);
  fn("getSregs", GetSregs);
  fn("setSregs", SetSregs);
  fn("setMsrs", SetMsrs);
  fn("initFpu", InitFpu);
  fn("setupLapicLint", SetupLapicLint);
  exports.Set("VcpuRunner", DefineVcpuRunner(env));
  fn("threadSelf", ThreadSelf);
  fn("threadKick", ThreadKick);

  fn("memfdCreate", MemfdCreate);
  fn("mmapFd", MmapFd);

  fn("eventfdCreate", EventfdCreate);
  fn("eventfdWrite", EventfdWrite);
  fn("eventfdRead", EventfdRead);
  fn("close", Close);
  fn("dup", Dup);
  fn("pipe", Pipe);
  fn("write", Write);
  fn("read", Read);
  fn("setNonBlocking", SetNonBlocking);
  fn("fileType", FileType);
  exports.Set("FdWatcher", DefineFdWatcher(env));
  constant("POLL_READABLE", UV_READABLE);
  constant("POLL_WRITABLE", UV_WRITABLE);
  constant("POLL_DISCONNECT", UV_DISCONNECT);

  fn("unixListen", UnixListen);
  fn("unixAccept", UnixAccept);
  fn("unixConnect", UnixConnect);
  fn("unixPair", UnixPair);
  fn("sendmsg", Sendmsg);
  fn("recvmsg", Recvmsg);
  fn("peerCred", PeerCred);
  fn("shutdown", Shutdown);
  constant("SOCK_STREAM", SOCK_STREAM);
  constant("SOCK_SEQPACKET", SOCK_SEQPACKET);
  constant("SOCK_DGRAM", SOCK_DGRAM);

  fn("tapOpen", TapOpen);
  fn("tapSetOffload", TapSetOffload);
  fn("tapSetVnetHdrSize", TapSetVnetHdrSize);
  return exports;
}

}  // namespace
}  // namespace vmm

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return vmm::Init(env, exports); }

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
