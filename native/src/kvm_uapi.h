// <linux/kvm.h> for C++. The uapi headers' __DECLARE_FLEX_ARRAY wraps the array in a struct
// with an empty member, which is 1 byte in C++ but 0 in C: kvm_cpuid2 and kvm_msrs grow to 12
// bytes, so their entries land at the wrong offset and the ioctl numbers (which encode the
// size) are ones the kernel does not know. Newer headers declare `TYPE NAME[0]` for C++ instead.
#pragma once

#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#include <linux/kvm.h>

static_assert(sizeof(kvm_cpuid2) == 8 && sizeof(kvm_msrs) == 8, "kernel struct layout");
