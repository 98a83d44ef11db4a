// memfd-backed guest RAM and the Mapping object that exposes it to JavaScript.
#include "memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include "addon.h"
#include "errors.h"
#include "unique_fd.h"

namespace vmm {

std::shared_ptr<Region> Region::Map(Napi::Env env, int fd, size_t size, off_t offset) {
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (data == MAP_FAILED) ThrowErrno(env, "mmap");
  return std::make_shared<Region>(data, size);
}

void Region::Unmap() {
  if (data_ != nullptr) munmap(data_, size_);
  data_ = nullptr;
}

Napi::ArrayBuffer ExternalBuffer(Napi::Env env, const std::shared_ptr<Region>& region) {
  auto owner = std::make_unique<std::shared_ptr<Region>>(region);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
      env, region->Data(), region->Size(),
      [](Napi::Env, void*, std::shared_ptr<Region>* owner) { delete owner; }, owner.get());
  owner.release();
  return buffer;
}

namespace {

// What mmapFd returns. Only mmapFd creates these: it passes the Region as an External.
class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {InstanceAccessor<&Mapping::Buffer>("buffer"),
                        InstanceAccessor<&Mapping::Address>("address"),
                        InstanceAccessor<&Mapping::Size>("size"),
                        InstanceMethod<&Mapping::Close>("close")});
  }

  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "Mappings are created by mmapFd()");
    }
    region_ = *info[0].As<Napi::External<std::shared_ptr<Region>>>().Data();
    address_ = reinterpret_cast<uintptr_t>(region_->Data());
    size_ = region_->Size();
    buffer_ = Napi::Persistent(ExternalBuffer(info.Env(), region_));
  }

 private:
  Napi::Value Buffer(const Napi::CallbackInfo&) { return buffer_.Value(); }
  Napi::Value Address(const Napi::CallbackInfo& info) { return Napi::BigInt::New(info.Env(), address_); }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), size_); }

  void Close(const Napi::CallbackInfo& info) {
    Args args(info, "close()");
    if (!region_) return;
    buffer_.Value().Detach();  // JS sees byteLength 0 instead of touching unmapped memory
    region_->Unmap();
    region_.reset();
  }

  std::shared_ptr<Region> region_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  uint64_t address_;
  size_t size_;
};

}  // namespace

Napi::Function DefineMapping(Napi::Env env) { return Mapping::Define(env); }

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Args args(info, "memfdCreate(name, size)");
  std::string name = args.Str(0);
  uint64_t size = args.Safe(1);
  Napi::Env env = info.Env();
  UniqueFd fd(Check(env, memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING), "memfd_create"));
  Check(env, ftruncate(fd.Get(), static_cast<off_t>(size)), "ftruncate");
  return Napi::Number::New(env, fd.Release());
}

Napi::Value MmapFd(const Napi::CallbackInfo& info) {
  Args args(info, "mmapFd(fd, size, offset?)");
  int fd = args.Fd(0);
  uint64_t size = args.Safe(1);
  uint64_t offset = args.Has(2) ? args.Safe(2) : 0;
  Napi::Env env = info.Env();
  std::shared_ptr<Region> region = Region::Map(env, fd, size, static_cast<off_t>(offset));
  auto* data = env.GetInstanceData<AddonData>();
  return data->mapping.New({Napi::External<std::shared_ptr<Region>>::New(env, &region)});
}

}  // namespace vmm
