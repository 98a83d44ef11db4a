// Unix domain sockets with fd passing (SCM_RIGHTS), for vhost-user style peers and helpers.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "unique_fd.h"

namespace vmm {
namespace {

// Linux passes at most this many fds in one message (SCM_MAX_FD).
constexpr uint32_t kMaxFds = 253;

sockaddr_un UnixAddress(Napi::Env env, const std::string& path, const char* call) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) ThrowErrno(env, call, ENAMETOOLONG);
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

uint32_t SocketType(const Args& args, size_t i) {
  uint32_t type = args.U32(i);
  if (type != SOCK_STREAM && type != SOCK_SEQPACKET && type != SOCK_DGRAM) {
    args.Fail("type must be SOCK_STREAM, SOCK_SEQPACKET or SOCK_DGRAM");
  }
  return type;
}

// recvmsg receives into this per-thread buffer and copies only what arrived into the result,
// instead of allocating and zero-filling maxLength bytes per call. It grows to the largest
// maxLength asked for (malloc: never zero-filled, so untouched pages cost nothing); after a
// call it is cut back to kScratchKeep bytes, never below.
constexpr size_t kScratchMin = 64 * 1024;
constexpr size_t kScratchKeep = 1024 * 1024;

class Scratch {
 public:
  ~Scratch() { std::free(data_); }

  // At least `length` bytes, or null when out of memory. Contents are undefined.
  uint8_t* Get(size_t length) {
    if (length > size_ || data_ == nullptr) {
      // Free first: the old contents are not needed, and peak memory stays one buffer.
      std::free(data_);
      size_ = 0;
      size_t size = std::max(length, kScratchMin);
      data_ = static_cast<uint8_t*>(std::malloc(size));
      if (data_ != nullptr) size_ = size;
    }
    return data_;
  }

  void Trim() {
    if (size_ <= kScratchKeep) return;
    // Shrinking realloc (mremap for a large block) keeps the start; if it fails, keep it all.
    if (void* smaller = std::realloc(data_, kScratchKeep)) {
      data_ = static_cast<uint8_t*>(smaller);
      size_ = kScratchKeep;
    }
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One per thread: the main thread and each worker call recvmsg independently.
thread_local Scratch t_scratch;

}  // namespace

// A fresh name beside `path` (same directory, so link(2) works), or "" when it would not fit
// in sun_path.
std::string TemporarySibling(const std::string& path) {
  static unsigned counter = 0;
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string name = dir + ".vmm-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  return name.size() < sizeof(sockaddr_un::sun_path) ? name : "";
}

Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Args args(info, "unixListen(path, type, backlog, mode?)");
  std::string path = args.Str(0);
  uint32_t type = SocketType(args, 1);
  int backlog = args.Integer(info[2], "backlog", 0, INT32_MAX);
  std::optional<mode_t> mode;
  if (args.Has(3)) mode = args.Integer(info[3], "mode", 0, 0777);
  Napi::Env env = info.Env();
  sockaddr_un final_address = UnixAddress(env, path, "bind");
  // The socket is bound, chmod'ed and listening under a temporary name, then linked into place:
  // a peer never finds `path` bound but refusing connections (between bind and listen), which a
  // stale-socket probe would take for a dead VMM's file. link(2), unlike rename(2), fails with
  // EEXIST rather than replacing a live socket. A path too long for a sibling binds directly.
  std::string temporary = TemporarySibling(path);
  const std::string& bound = temporary.empty() ? path : temporary;
  sockaddr_un address = temporary.empty() ? final_address : UnixAddress(env, temporary, "bind");
  UniqueFd fd(Check(env, socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket"));
  // bind(2) gives the file the socket inode's mode masked by the umask: set it first, so the
  // file is never more open than `mode`, not even between bind and chmod.
  if (mode) Check(env, fchmod(fd.Get(), *mode), "fchmod");
  Check(env, bind(fd.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address), "bind");
  try {
    // Exactly `mode`, whatever the umask took away (the process umask is left alone).
    if (mode) Check(env, chmod(bound.c_str(), *mode), "chmod");
    // Datagram sockets have no connections to listen for; bound is all they need.
    if (type != SOCK_DGRAM) Check(env, listen(fd.Get(), backlog), "listen");
    if (!temporary.empty()) {
      // EEXIST here is what bind(2) on `path` says as EADDRINUSE: keep that meaning.
      if (link(temporary.c_str(), path.c_str()) < 0) ThrowErrno(env, "bind", errno == EEXIST ? EADDRINUSE : errno);
      unlink(temporary.c_str());
    }
  } catch (...) {
    unlink(bound.c_str());  // bind created it, so it is ours to remove
    throw;
  }
  return Napi::Number::New(env, fd.Release());
}

Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  Args args(info, "unixAccept(fd)");
  int fd = RetryEintr([&] { return accept4(args.Fd(0), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK); });
  if (fd < 0 && errno == EAGAIN) return info.Env().Null();
  return Napi::Number::New(info.Env(), Check(info.Env(), fd, "accept4"));
}

Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Args args(info, "unixConnect(path, type, wait?)");
  std::string path = args.Str(0);
  uint32_t type = SocketType(args, 1);
  bool wait = args.Has(2) ? args.Bool(2) : true;
  Napi::Env env = info.Env();
  sockaddr_un address = UnixAddress(env, path, "connect");
  // wait: blocking, so a full backlog waits instead of failing (fine off the main thread, or
  // for a listener that is known to accept). !wait: never blocks; a full backlog gives null
  // and the caller tries again later (AF_UNIX has no in-progress state to poll for: Linux
  // answers EAGAIN and leaves the socket unconnected; EINPROGRESS is handled the same way).
  UniqueFd fd(Check(env, socket(AF_UNIX, type | SOCK_CLOEXEC | (wait ? 0 : SOCK_NONBLOCK), 0), "socket"));
  int rc = RetryEintr([&] { return connect(fd.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address); });
  if (rc < 0 && !wait && (errno == EAGAIN || errno == EINPROGRESS)) return env.Null();
  Check(env, rc, "connect");
  if (wait) {
    int flags = Check(env, fcntl(fd.Get(), F_GETFL), "fcntl");
    Check(env, fcntl(fd.Get(), F_SETFL, flags | O_NONBLOCK), "fcntl");
  }
  return Napi::Number::New(env, fd.Release());
}

Napi::Value UnixPair(const Napi::CallbackInfo& info) {
  Args args(info, "unixPair(type)");
  uint32_t type = SocketType(args, 0);
  Napi::Env env = info.Env();
  int fds[2];
  Check(env, socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), "socketpair");
  UniqueFd first(fds[0]), second(fds[1]);
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, first.Get()));
  result.Set(1u, Napi::Number::New(env, second.Get()));
  first.Release();
  second.Release();
  return result;
}

Napi::Value Sendmsg(const Napi::CallbackInfo& info) {
  Args args(info, "sendmsg(fd, data, fds)");
  int fd = args.Fd(0);
  Napi::Uint8Array data = args.Bytes(1);
  Napi::Array fd_list = args.Arr(2);
  if (fd_list.Length() > kMaxFds) args.Fail("fds may hold at most 253 fds");
  std::vector<int> fds(fd_list.Length());
  for (uint32_t i = 0; i < fds.size(); i++) {
    fds[i] = args.Integer(fd_list.Get(i), "fds[" + std::to_string(i) + "]", 0, INT32_MAX);
  }

  iovec iov{data.Data(), data.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<uint64_t> control;  // uint64_t keeps the cmsghdr aligned
  if (!fds.empty()) {
    size_t bytes = fds.size() * sizeof(int);
    control.resize((CMSG_SPACE(bytes) + 7) / 8);
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(bytes);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(bytes);
    std::memcpy(CMSG_DATA(cmsg), fds.data(), bytes);
  }
  ssize_t n = RetryEintr([&] { return sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
  if (n < 0 && errno == EAGAIN) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), Check(info.Env(), n, "sendmsg"));
}

Napi::Value Recvmsg(const Napi::CallbackInfo& info) {
  Args args(info, "recvmsg(fd, maxLength, maxFds)");
  int fd = args.Fd(0);
  size_t max_length = args.Integer(info[1], "maxLength", 0, INT32_MAX);
  uint32_t max_fds = args.Integer(info[2], "maxFds", 0, kMaxFds);
  Napi::Env env = info.Env();

  // Cut a grown scratch buffer back on every way out, the throwing ones included.
  struct TrimOnExit {
    ~TrimOnExit() { t_scratch.Trim(); }
  } trim;
  uint8_t* data = t_scratch.Get(max_length);
  if (data == nullptr) ThrowErrno(env, "recvmsg", ENOMEM);
  alignas(cmsghdr) uint8_t control[CMSG_SPACE(kMaxFds * sizeof(int))];
  iovec iov{data, max_length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (max_fds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(max_fds * sizeof(int));
  }
  // recvmsg, never read(2): read cannot consume a zero-length SEQPACKET datagram.
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); });
  if (n < 0 && errno == EAGAIN) return env.Null();
  Check(env, n, "recvmsg");

  // Own every received fd (even beyond maxFds: the kernel may fit more into the padding)
  // until the result is built, so nothing leaks if building it throws.
  std::vector<UniqueFd> fds;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int received;
      std::memcpy(&received, CMSG_DATA(cmsg) + i * sizeof(int), sizeof received);
      fds.emplace_back(received);
    }
  }
  Napi::Object result = Napi::Object::New(env);
  // The one copy: exactly the received bytes, into a Buffer of their own.
  result.Set("data", Napi::Buffer<uint8_t>::Copy(env, data, n));
  Napi::Array fd_array = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < fds.size(); i++) fd_array.Set(i, Napi::Number::New(env, fds[i].Get()));
  result.Set("fds", fd_array);
  result.Set("truncated", Napi::Boolean::New(env, msg.msg_flags & MSG_TRUNC));
  result.Set("controlTruncated", Napi::Boolean::New(env, msg.msg_flags & MSG_CTRUNC));
  for (UniqueFd& received : fds) received.Release();
  return result;
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Args args(info, "peerCred(fd)");
  Napi::Env env = info.Env();
  ucred cred{};
  socklen_t length = sizeof cred;
  Check(env, getsockopt(args.Fd(0), SOL_SOCKET, SO_PEERCRED, &cred, &length), "getsockopt");
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  Args args(info, "shutdown(fd, how?)");
  int fd = args.Fd(0);
  int how = SHUT_RDWR;
  if (args.Has(1)) {
    std::string name = args.Str(1);
    if (name == "read") how = SHUT_RD;
    else if (name == "write") how = SHUT_WR;
    else if (name != "both") args.Fail("how must be 'read', 'write' or 'both'");
  }
  Check(info.Env(), shutdown(fd, how), "shutdown");
  return info.Env().Undefined();
}

}  // namespace vmm
