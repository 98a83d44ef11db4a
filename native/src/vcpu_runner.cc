// VcpuRunner runs one vCPU on the thread that constructed it (a worker); threadKick lets any
// other thread interrupt its KVM_RUN.
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>

#include <mutex>
#include <set>

#include "addon.h"
#include "errors.h"
#include "kvm_uapi.h"
#include "memory.h"

namespace vmm {
namespace {

// Not SIGUSR1: Node starts the inspector on it. (SIGRTMIN is not a constant in glibc.)
int KickSignal() { return SIGRTMIN + 4; }

// kvm_run of the runner on this thread, for the signal handler. initial-exec keeps the access
// in the handler allocation-free (a dlopen'ed object's TLS is otherwise allocated lazily).
__attribute__((tls_model("initial-exec"))) thread_local kvm_run* t_kvm_run = nullptr;

// Threads that have a live VcpuRunner. Only these are signalled: a pthread_t of a thread that
// has exited must never reach pthread_kill.
std::mutex g_runners_mutex;
std::multiset<pthread_t> g_runners;

// A KVM_RUN in progress returns EINTR (the handler has no SA_RESTART); immediate_exit also
// makes the next KVM_RUN return at once, so a kick that lands just before the ioctl is not lost.
void OnKick(int) {
  kvm_run* run = t_kvm_run;
  if (run != nullptr) run->immediate_exit = 1;
}

class VcpuRunner : public Napi::ObjectWrap<VcpuRunner> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VcpuRunner",
                       {InstanceMethod<&VcpuRunner::Run>("run"),
                        InstanceAccessor<&VcpuRunner::KvmRun>("kvmRun"),
                        InstanceAccessor<&VcpuRunner::ThreadId>("threadId"),
                        InstanceMethod<&VcpuRunner::Close>("close")});
  }

  explicit VcpuRunner(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VcpuRunner>(info) {
    Args args(info, "new VcpuRunner(vcpuFd, mmapSize)");
    fd_ = args.Fd(0);
    size_t size = args.Safe(1);
    if (size < sizeof(kvm_run)) args.Fail("mmapSize must be at least sizeof(struct kvm_run)");
    Napi::Env env = info.Env();
    region_ = Region::Map(env, fd_, size, 0);
    run_ = static_cast<kvm_run*>(region_->Data());
    buffer_ = Napi::Persistent(ExternalBuffer(env, region_));

    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, KickSignal());
    pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);
    t_kvm_run = run_;
    thread_ = pthread_self();
    {
      std::lock_guard<std::mutex> lock(g_runners_mutex);
      g_runners.insert(thread_);
    }
    registered_ = true;
    // A terminated worker must leave the registry before its thread exits.
    env_ = env;
    napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  }

  ~VcpuRunner() override { Unregister(true); }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Args args(info, "run()");
    if (!region_) throw Napi::Error::New(info.Env(), "VcpuRunner is closed");
    t_kvm_run = run_;  // in case another runner was made on this thread since
    if (ioctl(fd_, KVM_RUN, 0) < 0) {
      if (errno != EINTR) ThrowErrno(info.Env(), "KVM_RUN");
      run_->immediate_exit = 0;
      return Napi::Number::New(info.Env(), -1);
    }
    return Napi::Number::New(info.Env(), run_->exit_reason);
  }

  Napi::Value KvmRun(const Napi::CallbackInfo&) { return buffer_.Value(); }

  Napi::Value ThreadId(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(thread_));
  }

  void Close(const Napi::CallbackInfo& info) {
    Args args(info, "close()");
    Unregister(true);
    if (!region_) return;
    buffer_.Value().Detach();
    region_->Unmap();
    region_.reset();
  }

  // Stops kicks from reaching this runner. Unmapping is left to close() or, failing that, to
  // whichever of this object and kvmRun is collected last (Region).
  void Unregister(bool remove_hook) {
    if (!registered_) return;
    registered_ = false;
    {
      std::lock_guard<std::mutex> lock(g_runners_mutex);
      g_runners.erase(g_runners.find(thread_));
    }
    if (t_kvm_run == run_) t_kvm_run = nullptr;
    if (remove_hook) napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
  }

  static void OnEnvCleanup(void* self) { static_cast<VcpuRunner*>(self)->Unregister(false); }

  int fd_;
  kvm_run* run_;
  std::shared_ptr<Region> region_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  pthread_t thread_;
  napi_env env_;
  bool registered_ = false;
};

}  // namespace

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = OnKick;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(KickSignal(), &action, nullptr);
  });
}

Napi::Function DefineVcpuRunner(Napi::Env env) { return VcpuRunner::Define(env); }

Napi::Value ThreadSelf(const Napi::CallbackInfo& info) {
  Args args(info, "threadSelf()");
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(pthread_self()));
}

Napi::Value ThreadKick(const Napi::CallbackInfo& info) {
  Args args(info, "threadKick(threadId)");
  pthread_t thread = static_cast<pthread_t>(args.Big(0));
  std::lock_guard<std::mutex> lock(g_runners_mutex);
  if (g_runners.count(thread) == 0) return info.Env().Undefined();
  int err = pthread_kill(thread, KickSignal());
  if (err != 0) ThrowErrno(info.Env(), "pthread_kill", err);
  return info.Env().Undefined();
}

}  // namespace vmm
