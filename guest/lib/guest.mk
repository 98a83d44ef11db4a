# Compiler and linker settings for vmm test guests. guest/Makefile includes
# this; a test guest elsewhere can too, once `make -C guest` has built
# libguest.a:
#
#   include path/to/guest/lib/guest.mk
#   foo.elf: foo.o $(GUEST_LIB)
#   	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@ foo.o $(GUEST_LIB)
#   foo.o: foo.c
#   	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<
#
# with `#include "guest.h"` and an `int guest_main(const char *cmdline,
# uint64_t ram_size)` in foo.c.
#
# Guest ring 0 runs under KVM's instruction emulator on the nested host,
# which lacks some instructions (SSE/AVX state, xsave, cmpxchg16b, popcnt,
# int3, fwait…): general registers only, baseline x86-64, no CET.

GUEST_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
GUEST_LIB := $(GUEST_ROOT)/build/libguest.a
GUEST_CC ?= gcc
GUEST_LD ?= ld
GUEST_AR ?= ar

GUEST_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra \
	-ffreestanding -fno-pic -fno-pie -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fcf-protection=none \
	-march=x86-64 -mtune=generic -mcmodel=small -mno-red-zone \
	-mno-sse -mno-mmx -mno-sse2 -mno-avx -mgeneral-regs-only \
	-nostdlib -static -I$(GUEST_ROOT)/lib

GUEST_LDFLAGS := -nostdlib -static -T $(GUEST_ROOT)/lib/guest.ld \
	-z max-page-size=4096 -z noexecstack --build-id=none
