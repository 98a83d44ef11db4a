// eventfds, pipes, plain fd calls, and FdWatcher: readiness callbacks from the libuv loop of
// the thread that created the watcher (main thread or worker).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "unique_fd.h"

namespace vmm {
namespace {

// libuv allows one poll handle per fd and loop: closing a second one silently takes the fd out
// of epoll for the first. Claimed by the constructor, released when closing starts.
std::mutex g_watched_mutex;
std::set<std::pair<uv_loop_t*, int>> g_watched;

bool Claim(uv_loop_t* loop, int fd) {
  std::lock_guard<std::mutex> lock(g_watched_mutex);
  return g_watched.emplace(loop, fd).second;
}

void Unclaim(uv_loop_t* loop, int fd) {
  std::lock_guard<std::mutex> lock(g_watched_mutex);
  g_watched.erase({loop, fd});
}

bool IsWatched(int fd) {
  std::lock_guard<std::mutex> lock(g_watched_mutex);
  for (const auto& [loop, watched] : g_watched) {
    if (watched == fd) return true;
  }
  return false;
}

// Watches one fd with a uv_poll_t. Started, it pins itself (like a Node handle) so a watcher
// JavaScript forgot about still fires; stopped and unreachable, it is collected and closed.
//
// The callback is held by the JavaScript object (a symbol-keyed property), and only weakly from
// C++. A persistent (strong) reference would be a GC root, and callbacks nearly always refer back
// to their watcher (a socket's `() => this.onReady()` holds the socket, which holds the watcher):
// that cycle through a root was never collected, so every connection a UnixServer ever accepted
// stayed in the heap (about 1.2 KB each, after full GCs). As a property the cycle is an ordinary
// one the GC collects once nothing else refers to it; close() drops the callback at once.
class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&FdWatcher::Start>("start"),
                        InstanceMethod<&FdWatcher::Stop>("stop"),
                        InstanceMethod<&FdWatcher::Ref>("ref"),
                        InstanceMethod<&FdWatcher::Unref>("unref"),
                        InstanceMethod<&FdWatcher::Close>("close")});
  }

  explicit FdWatcher(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<FdWatcher>(info) {
    Args args(info, "new FdWatcher(fd, callback)");
    int fd = args.Fd(0);
    Napi::Function callback = args.Fn(1);
    Napi::Env env = info.Env();
    // First, while a throw has nothing to undo.
    info.This().As<Napi::Object>().DefineProperty(
        Napi::PropertyDescriptor::Value(CallbackKey(env), callback, napi_configurable));
    callback_ = Napi::Weak(callback);
    uv_loop_t* loop = nullptr;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_uv_event_loop(env, &loop));

    auto poll = std::make_unique<Poll>();
    poll->handle.data = poll.get();
    poll->fd = fd;
    if (!Claim(loop, fd)) {
      ThrowErrno(env, "uv_poll_init", EEXIST, "fd " + std::to_string(fd) + " already has an FdWatcher on this thread");
    }
    // Worker teardown waits for this hook to finish closing the handle, so the loop closes clean.
    if (napi_add_async_cleanup_hook(env, OnEnvCleanup, poll.get(), &poll->cleanup) != napi_ok) {
      Unclaim(loop, fd);
      throw Napi::Error::New(env);
    }
    if (int rc = uv_poll_init(loop, &poll->handle, fd); rc < 0) {
      napi_remove_async_cleanup_hook(poll->cleanup);
      Unclaim(loop, fd);
      ThrowErrno(env, "uv_poll_init", -rc);
    }
    poll_ = poll.release();
    poll_->owner = this;
    async_.emplace(env, "vmm:FdWatcher");
  }

  ~FdWatcher() override {
    if (poll_ != nullptr) BeginClose(poll_);
  }

 private:
  // The libuv handle. It outlives the watcher until libuv's close callback frees it.
  struct Poll {
    uv_poll_t handle;
    int fd;
    FdWatcher* owner = nullptr;  // null once closing
    napi_async_cleanup_hook_handle cleanup = nullptr;
  };

  void Start(const Napi::CallbackInfo& info) {
    Args args(info, "start(events)");
    int events = args.Integer(info[0], "events", 0, UV_READABLE | UV_WRITABLE | UV_DISCONNECT | UV_PRIORITIZED);
    if (poll_ == nullptr) throw Napi::Error::New(info.Env(), "FdWatcher is closed");
    int rc = uv_poll_start(&poll_->handle, events, OnPoll);
    if (rc < 0) ThrowErrno(info.Env(), "uv_poll_start", -rc);
    if (!pinned_) ObjectWrap::Ref();
    pinned_ = true;
  }

  void Stop(const Napi::CallbackInfo& info) {
    Args args(info, "stop()");
    if (poll_ != nullptr) uv_poll_stop(&poll_->handle);
    Unpin();
  }

  void Ref(const Napi::CallbackInfo& info) {
    Args args(info, "ref()");
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_->handle));
  }

  void Unref(const Napi::CallbackInfo& info) {
    Args args(info, "unref()");
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&poll_->handle));
  }

  void Close(const Napi::CallbackInfo& info) {
    Args args(info, "close()");
    if (poll_ != nullptr) BeginClose(poll_);
    // async_hooks (and jest --detectOpenHandles) see the resource end here, or once the
    // callback that is using it returns.
    if (!in_callback_) async_.reset();
    // A closed watcher never calls back: let go of the callback (and whatever it closes over) now,
    // even while JavaScript still holds the watcher. Safe inside the callback: the running
    // function is held by the call itself.
    if (!callback_.IsEmpty()) {
      info.This().As<Napi::Object>().Delete(CallbackKey(info.Env()));
      callback_.Reset();
    }
    Unpin();
  }

  // Symbol.for(): one key per environment without per-environment state to keep.
  static Napi::Symbol CallbackKey(Napi::Env env) { return Napi::Symbol::For(env, "vmm.FdWatcher.callback"); }

  void Unpin() {
    if (pinned_) ObjectWrap::Unref();
    pinned_ = false;
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    FdWatcher* self = static_cast<Poll*>(handle->data)->owner;
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    // `receiver` is a handle on the JS object, so `self` cannot be collected during the call.
    Napi::HandleScope scope(env);
    Napi::Object receiver = self->Value();
    // Started means pinned, and the pinned object holds the callback; an empty one would mean the
    // object is already collected and merely not finalized yet: nobody is left to call.
    Napi::Function callback = self->callback_.Value();
    if (receiver.IsEmpty() || callback.IsEmpty()) return;
    self->in_callback_ = true;
    try {
      callback.MakeCallback(receiver, {Napi::Number::New(env, events), Napi::Number::New(env, status)},
                            *self->async_);
    } catch (const Napi::Error& e) {
      // No JavaScript frame to throw into: report it like any uncaught exception.
      napi_fatal_exception(env, e.Value());
    }
    self->in_callback_ = false;
    if (self->poll_ == nullptr) self->async_.reset();  // closed by the callback
  }

  // Safe from inside the callback: libuv frees the handle only in a later loop phase.
  static void BeginClose(Poll* poll) {
    if (poll->owner != nullptr) poll->owner->poll_ = nullptr;
    poll->owner = nullptr;
    uv_poll_stop(&poll->handle);
    Unclaim(poll->handle.loop, poll->fd);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll->handle), [](uv_handle_t* handle) {
      Poll* poll = static_cast<Poll*>(handle->data);
      napi_remove_async_cleanup_hook(poll->cleanup);
      delete poll;
    });
  }

  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    Poll* poll = static_cast<Poll*>(arg);
    // Either already closing (its close callback removes the hook) or closed here.
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&poll->handle))) BeginClose(poll);
  }

  std::optional<Napi::AsyncContext> async_;
  Napi::FunctionReference callback_;  // weak; the JS object holds the callback (see above)
  Poll* poll_ = nullptr;
  bool pinned_ = false;
  bool in_callback_ = false;
};

}  // namespace

Napi::Function DefineFdWatcher(Napi::Env env) { return FdWatcher::Define(env); }

Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Args args(info, "eventfdCreate(initial?)");
  unsigned int initial = args.Has(0) ? args.U32(0) : 0;
  return Napi::Number::New(info.Env(), Check(info.Env(), eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
}

Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Args args(info, "eventfdWrite(fd, value)");
  int fd = args.Fd(0);
  uint64_t value = args.Big(1);
  Check(info.Env(), RetryEintr([&] { return write(fd, &value, sizeof value); }), "write");
  return info.Env().Undefined();
}

Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Args args(info, "eventfdRead(fd)");
  int fd = args.Fd(0);
  uint64_t value;
  ssize_t n = RetryEintr([&] { return read(fd, &value, sizeof value); });
  if (n < 0 && errno == EAGAIN) return info.Env().Null();
  Check(info.Env(), n, "read");
  return Napi::BigInt::New(info.Env(), value);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Args args(info, "close(fd)");
  int fd = args.Fd(0);
  // libuv aborts the process when an fd it polls disappears under it.
  if (IsWatched(fd)) {
    ThrowErrno(info.Env(), "close", EBUSY, "fd " + std::to_string(fd) + " has an open FdWatcher; close the watcher first");
  }
  // Linux releases the fd even when close reports EINTR; retrying could close a reused number.
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close");
  return info.Env().Undefined();
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  Args args(info, "dup(fd)");
  return Napi::Number::New(info.Env(), Check(info.Env(), fcntl(args.Fd(0), F_DUPFD_CLOEXEC, 0), "fcntl"));
}

Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Args args(info, "pipe()");
  Napi::Env env = info.Env();
  int fds[2];
  Check(env, pipe2(fds, O_CLOEXEC | O_NONBLOCK), "pipe2");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, read_end.Get()));
  result.Set(1u, Napi::Number::New(env, write_end.Get()));
  read_end.Release();
  write_end.Release();
  return result;
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  Args args(info, "write(fd, data)");
  int fd = args.Fd(0);
  Napi::Uint8Array data = args.Bytes(1);
  ssize_t n = RetryEintr([&] { return write(fd, data.Data(), data.ByteLength()); });
  if (n < 0 && errno == EAGAIN) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), Check(info.Env(), n, "write"));
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  Args args(info, "read(fd, maxLength)");
  int fd = args.Fd(0);
  size_t max_length = args.Integer(info[1], "maxLength", 0, INT32_MAX);
  // Reused per JS thread up to kScratchMax: a fresh zero-filled 64 KiB vector per call cost more
  // than the read itself on the TAP receive path (which reads twice per frame: data, then EAGAIN).
  constexpr size_t kScratchMax = 1 << 20;
  thread_local std::vector<uint8_t> scratch;
  std::vector<uint8_t> large;
  std::vector<uint8_t>& data = max_length <= kScratchMax ? scratch : large;
  if (data.size() < max_length) data.resize(max_length);
  ssize_t n = RetryEintr([&] { return read(fd, data.data(), max_length); });
  if (n < 0 && errno == EAGAIN) return info.Env().Null();
  Check(info.Env(), n, "read");
  return Napi::Buffer<uint8_t>::Copy(info.Env(), data.data(), n);
}

Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  Args args(info, "setNonBlocking(fd, on)");
  int fd = args.Fd(0);
  bool on = args.Bool(1);
  int flags = Check(info.Env(), fcntl(fd, F_GETFL), "fcntl");
  Check(info.Env(), fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK), "fcntl");
  return info.Env().Undefined();
}

Napi::Value FileType(const Napi::CallbackInfo& info) {
  Args args(info, "fileType(fd)");
  struct stat st;
  Check(info.Env(), fstat(args.Fd(0), &st), "fstat");
  return Napi::Number::New(info.Env(), st.st_mode & S_IFMT);
}

}  // namespace vmm
