// TAP network devices with virtio-net headers, the backend of a virtio-net device.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cstring>

#include "addon.h"
#include "errors.h"
#include "unique_fd.h"

namespace vmm {

Napi::Value TapOpen(const Napi::CallbackInfo& info) {
  Args args(info, "tapOpen(name)");
  std::string name = args.Str(0);
  Napi::Env env = info.Env();
  if (name.size() >= IFNAMSIZ) ThrowErrno(env, "TUNSETIFF", ENAMETOOLONG);
  UniqueFd fd(Check(env, open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK), "open"));
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  Check(env, ioctl(fd.Get(), TUNSETIFF, &request), "TUNSETIFF");
  // The kernel fills in the name it chose (from a pattern like "tap%d", or when name is '').
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd.Get()));
  result.Set("name", Napi::String::New(env, request.ifr_name, strnlen(request.ifr_name, IFNAMSIZ)));
  fd.Release();
  return result;
}

Napi::Value TapSetOffload(const Napi::CallbackInfo& info) {
  Args args(info, "tapSetOffload(fd, flags)");
  int fd = args.Fd(0);
  unsigned long flags = args.U32(1);
  Check(info.Env(), ioctl(fd, TUNSETOFFLOAD, flags), "TUNSETOFFLOAD");
  return info.Env().Undefined();
}

Napi::Value TapSetVnetHdrSize(const Napi::CallbackInfo& info) {
  Args args(info, "tapSetVnetHdrSize(fd, size)");
  int fd = args.Fd(0);
  int size = args.Integer(info[1], "size", 0, INT32_MAX);
  Check(info.Env(), ioctl(fd, TUNSETVNETHDRSZ, &size), "TUNSETVNETHDRSZ");
  return info.Env().Undefined();
}

}  // namespace vmm
