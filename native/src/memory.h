// Shared mappings exposed to JavaScript as external ArrayBuffers (guest RAM, kvm_run).
#pragma once

#include <napi.h>
#include <sys/types.h>

#include <memory>

namespace vmm {

// One mmap'ed range. Its JS owner (Mapping, VcpuRunner) unmaps it on close(); otherwise the
// last of owner and buffer to be collected does, so a buffer never outlives the memory.
class Region {
 public:
  // mmap(size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset); throws on failure.
  static std::shared_ptr<Region> Map(Napi::Env env, int fd, size_t size, off_t offset);
  Region(void* data, size_t size) : data_(data), size_(size) {}
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() { Unmap(); }

  void Unmap();
  void* Data() const { return data_; }
  size_t Size() const { return size_; }

 private:
  void* data_;
  size_t size_;
};

// An external ArrayBuffer over the region that shares ownership of it.
Napi::ArrayBuffer ExternalBuffer(Napi::Env env, const std::shared_ptr<Region>& region);

}  // namespace vmm
