{
  "targets": [{
    "target_name": "vmm_native",
    "sources": [
      "src/addon.cc",
      "src/kvm.cc",
      "src/vcpu_runner.cc",
      "src/memory.cc",
      "src/fd.cc",
      "src/socket.cc",
      "src/tap.cc"
    ],
    "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
    "defines": [
      "NAPI_VERSION=9",
      "NAPI_CPP_EXCEPTIONS",
      "NODE_ADDON_API_DISABLE_DEPRECATED"
    ],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"]
  }]
}
