// How the addon reports failures: system calls become Node-style errors that TypeScript can
// tell apart by `code`, and argument mistakes become TypeErrors naming the expected call.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace vmm {

// Error "<call> failed: <strerror>" with code = errno name, errno (positive), syscall.
// `err` defaults to errno, read at the call site before anything can clobber it.
[[noreturn]] inline void ThrowErrno(Napi::Env env, const char* call, int err = errno,
                                    const std::string& detail = "") {
  const char* name = strerrorname_np(err);
  Napi::Error error = Napi::Error::New(
      env, std::string(call) + " failed: " + (detail.empty() ? strerror(err) : detail));
  Napi::Object object = error.Value();
  object.Set("code", Napi::String::New(env, name ? name : "UNKNOWN"));
  object.Set("errno", Napi::Number::New(env, err));
  object.Set("syscall", Napi::String::New(env, call));
  throw error;
}

// Returns rc, or throws the errno error when the call failed (rc < 0).
template <typename T>
inline T Check(Napi::Env env, T rc, const char* call) {
  if (rc < 0) ThrowErrno(env, call);
  return rc;
}

// Repeats a call interrupted by a signal (the vCPU kick signal has no SA_RESTART).
template <typename F>
inline auto RetryEintr(F call) {
  decltype(call()) rc;
  do rc = call();
  while (rc < 0 && errno == EINTR);
  return rc;
}

// Checks a function's arguments against its usage line, e.g. "close(fd)" or
// "kvmOpen(path?)". Mistakes throw TypeError "Usage: close(fd): fd must be ...".
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* usage) : info_(info), usage_(usage) {
    std::string params(usage_.substr(usage_.find('(') + 1));
    params.pop_back();
    size_t required = 0;
    for (size_t start = 0; start < params.size();) {
      size_t end = params.find(", ", start);
      if (end == std::string::npos) end = params.size();
      std::string name = params.substr(start, end - start);
      if (name.back() == '?') name.pop_back();
      else required = names_.size() + 1;
      names_.push_back(name);
      start = end + 2;
    }
    if (info.Length() < required || info.Length() > names_.size()) {
      Fail("expected " + std::to_string(required) +
           (required == names_.size() ? "" : "-" + std::to_string(names_.size())) +
           " arguments, got " + std::to_string(info.Length()));
    }
  }

  Napi::Env Env() const { return info_.Env(); }
  // Present and not undefined (optional parameters).
  bool Has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined(); }

  int Fd(size_t i) const { return static_cast<int>(Integer(info_[i], names_[i], 0, INT32_MAX)); }
  uint32_t U32(size_t i) const { return static_cast<uint32_t>(Integer(info_[i], names_[i], 0, UINT32_MAX)); }
  // A non-negative integer that a double holds exactly (sizes, guest-physical addresses).
  uint64_t Safe(size_t i) const { return Integer(info_[i], names_[i], 0, kMaxSafe); }
  uint64_t Big(size_t i) const { return BigU64(info_[i], names_[i]); }

  bool Bool(size_t i) const {
    if (!info_[i].IsBoolean()) Fail(names_[i] + " must be a boolean");
    return info_[i].As<Napi::Boolean>();
  }
  std::string Str(size_t i) const {
    if (!info_[i].IsString()) Fail(names_[i] + " must be a string");
    return info_[i].As<Napi::String>();
  }
  Napi::Uint8Array Bytes(size_t i) const {
    if (!info_[i].IsTypedArray() ||
        info_[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      Fail(names_[i] + " must be a Uint8Array");
    }
    return info_[i].As<Napi::Uint8Array>();
  }
  Napi::Array Arr(size_t i) const {
    if (!info_[i].IsArray()) Fail(names_[i] + " must be an array");
    return info_[i].As<Napi::Array>();
  }
  Napi::Object Obj(size_t i) const { return ObjOf(info_[i], names_[i]); }
  Napi::Function Fn(size_t i) const {
    if (!info_[i].IsFunction()) Fail(names_[i] + " must be a function");
    return info_[i].As<Napi::Function>();
  }

  // The same checks for fields of object arguments; `name` is the path for the message.
  Napi::Object ObjOf(Napi::Value v, const std::string& name) const {
    if (!v.IsObject()) Fail(name + " must be an object");
    return v.As<Napi::Object>();
  }
  uint64_t Integer(Napi::Value v, const std::string& name, uint64_t min, uint64_t max) const {
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max) && std::trunc(d) == d)) {
      Fail(name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return static_cast<uint64_t>(d);
  }
  uint64_t BigU64(Napi::Value v, const std::string& name) const {
    bool lossless = false;
    uint64_t value = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    if (!lossless) Fail(name + " must be a bigint from 0n to 2n**64n-1n");
    return value;
  }

  [[noreturn]] void Fail(const std::string& why) const {
    Napi::TypeError error = Napi::TypeError::New(Env(), "Usage: " + usage_ + ": " + why);
    error.Value().Set("code", Napi::String::New(Env(), "ERR_INVALID_ARG_TYPE"));
    throw error;
  }

  static constexpr uint64_t kMaxSafe = (1ULL << 53) - 1;

 private:
  const Napi::CallbackInfo& info_;
  std::string usage_;
  std::vector<std::string> names_;
};

}  // namespace vmm
