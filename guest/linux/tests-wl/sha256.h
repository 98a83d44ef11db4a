/* SPDX-License-Identifier: MIT */
/* wltest.c's SHA-256: the guest programs' one copy (guest/linux/include/sha256.h). */
#include "../include/sha256.h"
