/* Minimal polled virtio-mmio driver; see virtio.h. */
#include "virtio.h"
#include "io.h"
#include "serial.h"
#include "string.h"

#define barrier() __asm__ volatile("" ::: "memory")
/* x86 may let a load pass an earlier store: the avail idx must be visible
 * before the device's suppression state is read (Linux: virtio_mb). */
#define mb() __asm__ volatile("mfence" ::: "memory")

static uint32_t rd(struct virtio_dev *d, uint32_t off) { return mmio_read32(d->base + off); }
static void wr(struct virtio_dev *d, uint32_t off, uint32_t v) { mmio_write32(d->base + off, v); }

static int is_hex(char c, unsigned *v)
{
	if (c >= '0' && c <= '9') { *v = c - '0'; return 1; }
	if (c >= 'a' && c <= 'f') { *v = c - 'a' + 10; return 1; }
	if (c >= 'A' && c <= 'F') { *v = c - 'A' + 10; return 1; }
	return 0;
}

uintptr_t virtio_find(const char *cmdline, uint32_t device_id)
{
	static const char key[] = "virtio_mmio.device=";
	const char *p = cmdline;
	if (!p) return 0;
	while (*p) {
		while (*p == ' ') p++;
		if (strncmp(p, key, sizeof(key) - 1) == 0) {
			const char *s = p + sizeof(key) - 1;
			while (*s && *s != ' ' && *s != '@') s++;
			if (s[0] == '@' && s[1] == '0' && (s[2] == 'x' || s[2] == 'X')) {
				uintptr_t base = 0;
				unsigned v;
				for (s += 3; is_hex(*s, &v); s++) base = base * 16 + v;
				if (mmio_read32(base + VIRTIO_MMIO_MAGIC_VALUE) == VIRTIO_MMIO_MAGIC &&
				    mmio_read32(base + VIRTIO_MMIO_DEVICE_ID) == device_id)
					return base;
			}
		}
		while (*p && *p != ' ') p++;
	}
	return 0;
}

void virtio_reset(struct virtio_dev *dev)
{
	wr(dev, VIRTIO_MMIO_STATUS, 0);
}

static int fail(struct virtio_dev *dev, int step, const char *why)
{
	serial_printf("virtio: init failed at step %d: %s\n", step, why);
	wr(dev, VIRTIO_MMIO_STATUS, rd(dev, VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_FAILED);
	return -step;
}

static void setup_queue(struct virtio_dev *dev, unsigned i)
{
	struct virtq *q = &dev->q[i];
	memset(q, 0, sizeof(*q));
	for (unsigned k = 0; k < VIRTQ_SIZE; k++) q->desc[k].next = (uint16_t)(k + 1);
	q->free_head = 0;
	q->num_free = VIRTQ_SIZE;
	wr(dev, VIRTIO_MMIO_QUEUE_SEL, i);
	wr(dev, VIRTIO_MMIO_QUEUE_NUM, VIRTQ_SIZE);
	uint64_t desc = (uintptr_t)q->desc, avail = (uintptr_t)&q->avail, used = (uintptr_t)&q->used;
	wr(dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(dev, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(dev, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr(dev, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	wr(dev, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr(dev, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	wr(dev, VIRTIO_MMIO_QUEUE_READY, 1);
}

int virtio_init(struct virtio_dev *dev, uintptr_t base, uint64_t wanted, unsigned nqueues)
{
	dev->base = base;
	dev->nqueues = nqueues;
	if (rd(dev, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC) return fail(dev, 1, "no virtio-mmio magic");
	if (rd(dev, VIRTIO_MMIO_VERSION) != 2) return fail(dev, 1, "not a version 2 (modern) virtio-mmio device");
	if (nqueues > VIRTIO_MAX_QUEUES) return fail(dev, 1, "too many queues asked for");
	wr(dev, VIRTIO_MMIO_STATUS, 0);
	wr(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t offered = rd(dev, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)rd(dev, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	if (!(offered & VIRTIO_F_VERSION_1)) return fail(dev, 2, "VERSION_1 not offered");
	dev->features = offered & (wanted | VIRTIO_F_VERSION_1);
	wr(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)dev->features);
	wr(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(dev->features >> 32));
	wr(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	if (!(rd(dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) return fail(dev, 3, "FEATURES_OK refused");
	for (unsigned i = 0; i < nqueues; i++) {
		wr(dev, VIRTIO_MMIO_QUEUE_SEL, i);
		uint32_t max = rd(dev, VIRTIO_MMIO_QUEUE_NUM_MAX);
		if (max < VIRTQ_SIZE) return fail(dev, 4, "queue smaller than VIRTQ_SIZE");
		setup_queue(dev, i);
	}
	wr(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	if (rd(dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FAILED) return fail(dev, 5, "device failed at DRIVER_OK");
	return 0;
}

int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned n)
{
	if (n == 0 || n > q->num_free) return -1;
	uint16_t head = q->free_head, at = head, last = head;
	for (unsigned k = 0; k < n; k++) {
		struct virtq_desc *d = &q->desc[at];
		last = at;
		d->addr = (uintptr_t)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags = (uint16_t)((bufs[k].write ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		at = d->next;
	}
	q->free_head = at;
	q->num_free = (uint16_t)(q->num_free - n);
	(void)last;
	uint16_t idx = q->avail.idx;
	q->avail.ring[idx % VIRTQ_SIZE] = head;
	barrier();
	*(volatile uint16_t *)&q->avail.idx = (uint16_t)(idx + 1);
	barrier();
	return head;
}

void virtq_kick(struct virtio_dev *dev, unsigned queue)
{
	struct virtq *q = &dev->q[queue];
	uint16_t now = *(volatile uint16_t *)&q->avail.idx, old = q->kicked;
	q->kicked = now;
	mb();
	if (dev->features & VIRTIO_F_RING_EVENT_IDX) {
		/* vring_need_event(avail_event, now, old) */
		uint16_t event = *(volatile uint16_t *)&q->used.avail_event;
		if ((uint16_t)(now - event - 1) >= (uint16_t)(now - old)) return;
	} else if (*(volatile uint16_t *)&q->used.flags & VIRTQ_USED_F_NO_NOTIFY) {
		return;
	}
	wr(dev, VIRTIO_MMIO_QUEUE_NOTIFY, queue);
}

int virtq_poll(struct virtq *q, uint32_t *len)
{
	uint16_t idx = *(volatile uint16_t *)&q->used.idx;
	if (idx == q->last_used) return -1;
	barrier();
	struct virtq_used_elem e = q->used.ring[q->last_used % VIRTQ_SIZE];
	q->last_used++;
	if (len) *len = e.len;
	/* Free the chain: walk it to its last descriptor, splice onto the free list. */
	uint16_t tail = (uint16_t)e.id, n = 1;
	while (q->desc[tail].flags & VIRTQ_DESC_F_NEXT) {
		tail = q->desc[tail].next;
		n++;
	}
	q->desc[tail].next = q->free_head;
	q->free_head = (uint16_t)e.id;
	q->num_free = (uint16_t)(q->num_free + n);
	return (int)e.id;
}
