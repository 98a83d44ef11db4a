/* A minimal polled virtio-mmio (version 2) driver for test guests: find a
 * device, negotiate features, set up split virtqueues in static guest RAM,
 * and poll the used rings (no interrupts: the guest keeps IF=0). Ring 0 here
 * may be emulated, so everything is short and simple; polling a used ring
 * reads guest RAM and costs no exit.
 *
 *   struct virtio_dev dev;
 *   uintptr_t base = virtio_find(cmdline, 63);   // from virtio_mmio.device=4K@0x…:IRQ
 *   if (!base || virtio_init(&dev, base, VIRTIO_F_VERSION_1 | …, 2)) fail;
 *   int head = virtq_add(&dev.q[1], bufs, 2);     // a chain: readable, then writable
 *   virtq_kick(&dev, 1);
 *   while (virtq_poll(&dev.q[1], &len) != head) cpu_relax();
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdint.h>

/* virtio-mmio registers (linux/virtio_mmio.h) */
#define VIRTIO_MMIO_MAGIC_VALUE		0x000
#define VIRTIO_MMIO_VERSION		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL	0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL	0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW	0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH	0x0a4
#define VIRTIO_MMIO_MAGIC		0x74726976	/* "virt" */

#define VIRTIO_STATUS_ACKNOWLEDGE	1
#define VIRTIO_STATUS_DRIVER		2
#define VIRTIO_STATUS_DRIVER_OK		4
#define VIRTIO_STATUS_FEATURES_OK	8
#define VIRTIO_STATUS_FAILED		128

#define VIRTIO_F_VERSION_1		(1ull << 32)
/* The driver notifies only when avail idx passes the device's avail_event,
 * and the device interrupts only past used_event (virtio 1.2 §2.7.10). */
#define VIRTIO_F_RING_EVENT_IDX		(1ull << 29)

#define VIRTQ_DESC_F_NEXT		1
#define VIRTQ_DESC_F_WRITE		2
/* used.flags: the device asks not to be notified (without EVENT_IDX). */
#define VIRTQ_USED_F_NO_NOTIFY		1

/* Entries per queue (the device may offer more; 16 is what crosvm/2020 offered). */
#define VIRTQ_SIZE			16
#define VIRTIO_MAX_QUEUES		2

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[VIRTQ_SIZE];
	uint16_t used_event;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[VIRTQ_SIZE];
	uint16_t avail_event;
};

/* One split ring and its driver-side state; lives in static (identity-mapped) RAM. */
struct virtq {
	struct virtq_desc desc[VIRTQ_SIZE] __attribute__((aligned(16)));
	struct virtq_avail avail __attribute__((aligned(2)));
	struct virtq_used used __attribute__((aligned(4)));
	uint16_t last_used;
	uint16_t free_head;	/* free descriptors, chained through .next */
	uint16_t num_free;
	uint16_t kicked;	/* avail idx at the last notification decision */
};

struct virtio_dev {
	uintptr_t base;
	uint64_t features;	/* negotiated */
	unsigned nqueues;
	struct virtq q[VIRTIO_MAX_QUEUES];
};

/* One buffer of a chain: readable by the device unless `write`. */
struct virtq_buf {
	const void *addr;
	uint32_t len;
	int write;
};

/* The first virtio-mmio device with `device_id` among the cmdline's
 * `virtio_mmio.device=SIZE@BASE:IRQ` entries (what vmm adds); 0 if none. */
uintptr_t virtio_find(const char *cmdline, uint32_t device_id);
/* Reset, ACK, DRIVER, negotiate (wanted & offered; VERSION_1 required; add
 * VIRTIO_F_RING_EVENT_IDX to `wanted` to use event indices),
 * set up `nqueues` queues of VIRTQ_SIZE, DRIVER_OK. 0 on success, else a
 * negative step number (also printed on serial). */
int virtio_init(struct virtio_dev *dev, uintptr_t base, uint64_t wanted, unsigned nqueues);
/* Put a chain on the available ring (not notified yet). Returns its head, or
 * -1 when the queue lacks free descriptors. */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned n);
/* QueueNotify, unless the device suppressed it as Linux's driver would see it:
 * with EVENT_IDX negotiated only when avail idx passed avail_event since the
 * last kick, without it unless used.flags has NO_NOTIFY. */
void virtq_kick(struct virtio_dev *dev, unsigned queue);
/* The next used chain's head (its descriptors are freed) with its used
 * length in *len, or -1 when none is new. Reads only guest RAM. */
int virtq_poll(struct virtq *q, uint32_t *len);
/* Reset the device (status 0). */
void virtio_reset(struct virtio_dev *dev);

#endif
