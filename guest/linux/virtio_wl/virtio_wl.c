// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * virtio_wl: the guest side of virtio-wl ("virtio wayland", device id 63).
 *
 * Written for vmm from its protocol notes (shared/spec/virtio-wl.md); no code of ChromeOS's
 * driver was used. User space sees what ChromeOS's driver offers (section 4 of the notes):
 * /dev/wl0 takes VIRTWL_IOCTL_NEW, and every object ("VFD": a host connection, shared memory,
 * a pipe) is an anonymous file that takes SEND/RECV ioctls, read, write, poll and mmap, with the
 * same ioctl numbers and struct layouts (include/uapi/linux/virtwl.h). On top of that it offers
 * SEND/RECV with a per-call flags word (MSG_DONTWAIT, ...: EXTENSION.md), which needs the
 * VIRTIO_WL_F_SEND_DONTWAIT device feature for sends the host cannot take at once.
 *
 * The two queues:
 *   out  every command is one chain (request, then a reply buffer); the device answers in
 *        order. Callers wait for the reply, except CLOSE, which nobody waits for: the device
 *        handles chains in order, so a CLOSE queued before the NEW that reuses its id is
 *        always seen first.
 *   in   page-sized buffers posted at probe. VFD_NEW and VFD_HUP (and the extension's
 *        VFD_WRITABLE) are handled and the page posted again at once; a VFD_RECV's page stays
 *        on its VFD's queue until user space has taken its bytes and ids. While user space
 *        does not read, the device runs out of buffers and stops reading the host: that is
 *        the back-pressure.
 *
 * Locking: vfds_lock (the id table) is taken before a VFD's lock; in_lock (the in queue) and
 * out_lock (the out queue, also taken in its interrupt callback) are taken last, alone.
 *
 * Kernel command line parameters (built in): virtio_wl.event_idx=0 refuses
 * VIRTIO_RING_F_EVENT_IDX, virtio_wl.send_dontwait=0 refuses the extension's feature (both to
 * test the device both ways).
 */
#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/ioport.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/scatterlist.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/virtio_wl.h>
#include <linux/virtwl.h>

static bool event_idx = true;
module_param(event_idx, bool, 0444);
MODULE_PARM_DESC(event_idx, "negotiate VIRTIO_RING_F_EVENT_IDX when the device offers it");

static bool send_dontwait = true;
module_param(send_dontwait, bool, 0444);
MODULE_PARM_DESC(send_dontwait, "negotiate VIRTIO_WL_F_SEND_DONTWAIT when the device offers it");

/*
 * Most payload bytes in one SEND: what vmm's device accepts (its MAX_SEND_PAYLOAD), which is
 * also the largest buffer ChromeOS's driver could allocate for one. Larger writes are split;
 * a larger SEND ioctl is refused with EMSGSIZE.
 */
#define VIRTWL_MAX_SEND_BYTES (4u << 20)
/* Payload pieces of a SEND (each one descriptor): 32 KiB keeps 4 MiB within 128 of them. */
#define VIRTWL_SEND_CHUNK (32u << 10)
#define VIRTWL_MAX_CHUNKS 128u
/* The largest command other than SEND's payload: SEND's header with 28 ids. */
#define VIRTWL_CMD_MAX (sizeof(struct virtio_wl_ctrl_vfd_send) + 4 * VIRTWL_SEND_MAX_ALLOCS)

static_assert(sizeof(struct virtio_wl_ctrl_vfd_new) == 64);
static_assert(sizeof(struct virtwl_ioctl_new) == 48);
static_assert(sizeof(struct virtwl_ioctl_txn) == 116);
static_assert(sizeof(struct virtwl_ioctl_msg) == 120);
static_assert(VIRTWL_MSG_DONTWAIT == MSG_DONTWAIT && VIRTWL_MSG_NOSIGNAL == MSG_NOSIGNAL &&
	      VIRTWL_MSG_CMSG_CLOEXEC == MSG_CMSG_CLOEXEC && VIRTWL_MSG_CTRUNC == MSG_CTRUNC);

struct virtwl_in_buf {
	struct list_head link;		/* on its VFD's queue while it holds a RECV */
	u8 *page;			/* VIRTWL_IN_BUFFER_SIZE bytes the device writes */
	u8 *data;			/* RECV bytes not yet read */
	size_t data_len;
	__le32 *ids;			/* RECV ids not yet taken */
	unsigned int id_count;
};

struct virtwl_info {
	struct virtio_device *vdev;
	struct miscdevice misc;
	struct virtqueue *in_vq;
	struct virtqueue *out_vq;
	bool transition_flags;
	bool dontwait;			/* VIRTIO_WL_F_SEND_DONTWAIT negotiated */
	bool indirect;

	struct mutex in_lock;
	struct virtwl_in_buf *in_bufs;
	unsigned int in_count;
	struct work_struct in_work;

	spinlock_t out_lock;
	wait_queue_head_t out_waitq;	/* out-queue space (and POLLOUT) */

	struct mutex vfds_lock;
	struct idr vfds;
};

struct virtwl_vfd {
	struct virtwl_info *vi;
	u32 id;
	u32 flags;			/* VFD flags as the device gave them */
	u64 pfn;			/* 0: nothing to mmap */
	u32 size;
	int open_flags;			/* O_RDONLY / O_WRONLY / O_RDWR of its file */
	bool has_file;			/* a file owns it (else the id table does) */

	struct mutex lock;		/* everything below */
	struct list_head in_queue;	/* struct virtwl_in_buf */
	bool hungup;
	/* Extension: a DONTWAIT send was answered WOULD_BLOCK and no VFD_WRITABLE came since. */
	bool send_blocked;
	u32 writable_events;
	wait_queue_head_t waitq;	/* data, hang-up, writable */
};

/* One command on the out queue and its reply. */
struct virtwl_req {
	struct completion done;
	unsigned int used_len;
	/* Nobody waits for it (CLOSE, or its caller was killed): the callback frees it. */
	bool abandoned;
	unsigned int nchunks;
	struct scatterlist in_sg;
	__le32 resp[16];		/* 64 bytes: the largest reply (RESP_VFD_NEW_DMABUF) */
	u8 cmd[VIRTWL_CMD_MAX];
	void **chunks;			/* nchunks payload pieces */
	struct scatterlist *out_sg;	/* cmd, then the pieces */
};

static const struct file_operations virtwl_vfd_fops;

/* --- out queue ------------------------------------------------------------------------ */

static struct virtwl_req *virtwl_req_alloc(size_t payload)
{
	unsigned int nchunks = DIV_ROUND_UP(payload, VIRTWL_SEND_CHUNK);
	size_t chunk = VIRTWL_SEND_CHUNK;
	struct virtwl_req *req;
	unsigned int i;

	if (nchunks > VIRTWL_MAX_CHUNKS) {
		chunk = PAGE_ALIGN(DIV_ROUND_UP(payload, VIRTWL_MAX_CHUNKS));
		nchunks = DIV_ROUND_UP(payload, chunk);
	}
	req = kzalloc(sizeof(*req) + nchunks * sizeof(void *) +
		      (nchunks + 1) * sizeof(struct scatterlist), GFP_KERNEL);
	if (!req)
		return NULL;
	init_completion(&req->done);
	req->chunks = (void **)(req + 1);
	req->out_sg = (struct scatterlist *)(req->chunks + nchunks);
	req->nchunks = nchunks;
	sg_init_table(req->out_sg, nchunks + 1);
	for (i = 0; i < nchunks; i++) {
		size_t len = min_t(size_t, chunk, payload - i * chunk);

		req->chunks[i] = kmalloc(len, GFP_KERNEL);
		if (!req->chunks[i])
			goto fail;
		sg_set_buf(&req->out_sg[i + 1], req->chunks[i], len);
	}
	return req;
fail:
	while (i--)
		kfree(req->chunks[i]);
	kfree(req);
	return NULL;
}

static void virtwl_req_free(struct virtwl_req *req)
{
	unsigned int i;

	for (i = 0; i < req->nchunks; i++)
		kfree(req->chunks[i]);
	kfree(req);
}

static void virtwl_out_callback(struct virtqueue *vq)
{
	struct virtwl_info *vi = vq->vdev->priv;
	struct virtwl_req *req, *abandoned = NULL;
	unsigned long flags;
	unsigned int len;

	spin_lock_irqsave(&vi->out_lock, flags);
	do {
		virtqueue_disable_cb(vq);
		while ((req = virtqueue_get_buf(vq, &len))) {
			req->used_len = len;
			if (req->abandoned) {
				/* chain them through the reply buffer: nobody reads it */
				*(struct virtwl_req **)req->resp = abandoned;
				abandoned = req;
			} else {
				complete(&req->done);
			}
		}
	} while (!virtqueue_enable_cb(vq));
	spin_unlock_irqrestore(&vi->out_lock, flags);
	while (abandoned) {
		req = abandoned;
		abandoned = *(struct virtwl_req **)req->resp;
		virtwl_req_free(req);
	}
	wake_up_interruptible_all(&vi->out_waitq);
}

enum virtwl_wait {
	VIRTWL_WAIT,		/* for ring space (interruptible) and the reply (killable) */
	VIRTWL_NOWAIT,		/* no ring space: -EAGAIN; then the reply as VIRTWL_WAIT */
	VIRTWL_ASYNC,		/* ring space uninterruptibly, no reply: the callback frees it */
};

/*
 * Queue `req` (cmd_len command bytes, then its payload pieces) and wait as asked. On success
 * req->resp holds req->used_len bytes of reply. On failure the caller still owns req, except
 * after -EINTR (a fatal signal while the device held it) and for VIRTWL_ASYNC.
 *
 * ChromeOS's driver gives up with EBUSY when the ring stays full for a second; this one waits
 * as long as it takes (a signal ends the wait), which no caller can mistake for a failure of
 * the device.
 */
static int virtwl_req_submit(struct virtwl_info *vi, struct virtwl_req *req, size_t cmd_len,
			     size_t payload, enum virtwl_wait how)
{
	struct scatterlist *sgs[2] = { req->out_sg, &req->in_sg };
	unsigned int descs = req->nchunks + 2;
	unsigned long flags;
	bool notify;
	int err;

	sg_set_buf(&req->out_sg[0], req->cmd, cmd_len);
	sg_init_one(&req->in_sg, req->resp, sizeof(req->resp));
	req->abandoned = how == VIRTWL_ASYNC;
	/* Linux's ring puts a chain of more than one buffer in one indirect descriptor. */
	if (vi->indirect)
		descs = 1;
	for (;;) {
		spin_lock_irqsave(&vi->out_lock, flags);
		err = virtqueue_add_sgs(vi->out_vq, sgs, 1, 1, req, GFP_ATOMIC);
		notify = !err && virtqueue_kick_prepare(vi->out_vq);
		spin_unlock_irqrestore(&vi->out_lock, flags);
		if (!err)
			break;
		if (err != -ENOSPC)
			return -ENODEV;
		if (how == VIRTWL_NOWAIT)
			return -EAGAIN;
		if (how == VIRTWL_ASYNC) {
			wait_event(vi->out_waitq, READ_ONCE(vi->out_vq->num_free) >= descs);
		} else if (wait_event_interruptible(vi->out_waitq,
						    READ_ONCE(vi->out_vq->num_free) >= descs)) {
			return -ERESTARTSYS;
		}
		/* the indirect table's GFP_ATOMIC allocation may fail: then direct descriptors */
		descs = req->nchunks + 2;
	}
	if (notify)
		virtqueue_notify(vi->out_vq);
	if (how == VIRTWL_ASYNC)
		return 0;

	/*
	 * The device owns the request now and cannot be told to forget it, so a signal cannot
	 * end this wait (returning would let a retried send go out twice); a fatal one can.
	 */
	if (wait_for_completion_killable(&req->done)) {
		spin_lock_irqsave(&vi->out_lock, flags);
		if (!completion_done(&req->done)) {
			req->abandoned = true;
			spin_unlock_irqrestore(&vi->out_lock, flags);
			return -EINTR;
		}
		spin_unlock_irqrestore(&vi->out_lock, flags);
	}
	return 0;
}

/* The reply's type, or 0 when the device wrote less than a type word. */
static u32 virtwl_resp_type(const struct virtwl_req *req)
{
	return req->used_len >= sizeof(__le32) ? le32_to_cpu(req->resp[0]) : 0;
}

/* What the guest sees for a reply (spec 2.6, as ChromeOS's driver maps it). */
static int virtwl_resp_errno(u32 type)
{
	switch (type) {
	case VIRTIO_WL_RESP_OK:
	case VIRTIO_WL_RESP_VFD_NEW:
	case VIRTIO_WL_RESP_VFD_NEW_DMABUF:
		return 0;
	case VIRTIO_WL_RESP_ERR:
		return -ENODEV;
	case VIRTIO_WL_RESP_OUT_OF_MEMORY:
		return -ENOMEM;
	case VIRTIO_WL_RESP_INVALID_ID:
		return -ENOENT;
	case VIRTIO_WL_RESP_INVALID_TYPE:
		return -EINVAL;
	case VIRTIO_WL_RESP_INVALID_FLAGS:
		return -EPERM;
	case VIRTIO_WL_RESP_INVALID_CMD:
		return -ENOTTY;
	default:
		return -EPROTO;
	}
}

/* CLOSE without waiting (see the top of the file); the device answers, nobody reads it. */
static void virtwl_send_close(struct virtwl_info *vi, u32 id)
{
	struct virtwl_req *req = virtwl_req_alloc(0);
	struct virtio_wl_ctrl_vfd *cmd;

	if (!req) {
		dev_warn(&vi->vdev->dev, "no memory to close vfd %u; the host keeps it\n", id);
		return;
	}
	cmd = (struct virtio_wl_ctrl_vfd *)req->cmd;
	cmd->hdr.type = cpu_to_le32(VIRTIO_WL_CMD_VFD_CLOSE);
	cmd->vfd_id = cpu_to_le32(id);
	if (virtwl_req_submit(vi, req, sizeof(*cmd), 0, VIRTWL_ASYNC))
		virtwl_req_free(req);
}

/* --- in queue ------------------------------------------------------------------------- */

static void virtwl_in_post(struct virtwl_info *vi, struct virtwl_in_buf *buf)
{
	struct scatterlist sg;
	bool notify;
	int err;

	sg_init_one(&sg, buf->page, VIRTWL_IN_BUFFER_SIZE);
	mutex_lock(&vi->in_lock);
	err = virtqueue_add_inbuf(vi->in_vq, &sg, 1, buf, GFP_KERNEL);
	notify = !err && virtqueue_kick_prepare(vi->in_vq);
	mutex_unlock(&vi->in_lock);
	if (err)
		dev_warn(&vi->vdev->dev, "cannot post an in-queue buffer: %d\n", err);
	else if (notify)
		virtqueue_notify(vi->in_vq);
}

static struct virtwl_vfd *virtwl_vfd_alloc(struct virtwl_info *vi)
{
	struct virtwl_vfd *vfd = kzalloc(sizeof(*vfd), GFP_KERNEL);

	if (!vfd)
		return NULL;
	vfd->vi = vi;
	mutex_init(&vfd->lock);
	INIT_LIST_HEAD(&vfd->in_queue);
	init_waitqueue_head(&vfd->waitq);
	return vfd;
}

static void virtwl_forget_host_vfd(struct virtwl_info *vi, u32 id);

/*
 * Give back the buffers a VFD still holds (it is out of the id table, so no more come):
 * host VFDs they carry that nobody will receive are closed, as a socket closes the fds of
 * a message nobody reads.
 */
static void virtwl_vfd_free(struct virtwl_vfd *vfd)
{
	struct virtwl_in_buf *buf, *next;
	unsigned int i;

	list_for_each_entry_safe(buf, next, &vfd->in_queue, link) {
		list_del(&buf->link);
		for (i = 0; i < buf->id_count; i++)
			virtwl_forget_host_vfd(vfd->vi, le32_to_cpu(buf->ids[i]));
		virtwl_in_post(vfd->vi, buf);
	}
	kfree(vfd);
}

/* A host VFD that no file will own (not received, or its fd could not be made). */
static void virtwl_forget_host_vfd(struct virtwl_info *vi, u32 id)
{
	struct virtwl_vfd *vfd;

	mutex_lock(&vi->vfds_lock);
	vfd = idr_find(&vi->vfds, id);
	if (vfd && !vfd->has_file)
		idr_remove(&vi->vfds, id);
	else
		vfd = NULL;
	mutex_unlock(&vi->vfds_lock);
	if (!vfd)
		return;
	/* out of the table first: the device may reuse a host id once it has the CLOSE */
	virtwl_send_close(vi, id);
	virtwl_vfd_free(vfd);
}

/*
 * A pfn the device hands out must lie outside guest RAM: mapping RAM into user space would
 * give it the kernel's memory. Such a VFD is kept, but cannot be mapped.
 */
static u64 virtwl_checked_pfn(struct virtwl_info *vi, u64 pfn, u32 size)
{
	resource_size_t start = (resource_size_t)pfn << VIRTWL_PFN_SHIFT;

	if (!pfn || !size)
		return 0;
	if (region_intersects(start, PAGE_ALIGN((size_t)size), IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT) {
		dev_warn(&vi->vdev->dev, "pfn 0x%llx (+%u bytes) is guest RAM: not mappable\n",
			 pfn, size);
		return 0;
	}
	return pfn;
}

/* The access mode of a VFD's file (spec 2.5; ChromeOS derives it the same way). */
static int virtwl_open_flags(struct virtwl_info *vi, u32 flags, u64 pfn)
{
	if (pfn)
		return O_RDWR;
	if (!vi->transition_flags)
		return O_RDWR;
	switch (flags & (VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_READ)) {
	case VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_READ:
		return O_RDWR;
	case VIRTIO_WL_VFD_WRITE:
		return O_WRONLY;
	default:
		return O_RDONLY;
	}
}

/* In-queue VFD_NEW: a host VFD, announced before the RECV that carries it. */
static void virtwl_event_vfd_new(struct virtwl_info *vi, const u8 *page, unsigned int len)
{
	const struct virtio_wl_ctrl_vfd_new *ev = (const void *)page;
	struct virtwl_vfd *vfd;
	u32 id;
	int ret;

	if (len < offsetofend(struct virtio_wl_ctrl_vfd_new, size))
		return;
	id = le32_to_cpu(ev->vfd_id);
	if (!id)
		return;
	if (!(id & VIRTIO_WL_VFD_ID_HOST_MASK) || (id & VIRTIO_WL_VFD_ID_ILLEGAL_MASK)) {
		dev_warn(&vi->vdev->dev, "host vfd id 0x%x is not a host id\n", id);
		return;
	}
	vfd = virtwl_vfd_alloc(vi);
	if (!vfd)
		return;
	vfd->id = id;
	vfd->flags = le32_to_cpu(ev->flags);
	vfd->size = le32_to_cpu(ev->size);
	vfd->pfn = virtwl_checked_pfn(vi, le64_to_cpu(ev->pfn), vfd->size);
	vfd->open_flags = virtwl_open_flags(vi, vfd->flags, vfd->pfn);
	mutex_lock(&vi->vfds_lock);
	ret = idr_alloc(&vi->vfds, vfd, id, id + 1, GFP_KERNEL);
	mutex_unlock(&vi->vfds_lock);
	if (ret < 0) {
		dev_warn(&vi->vdev->dev, "host vfd 0x%x: %s\n", id,
			 ret == -ENOSPC ? "id already in use" : "no memory");
		kfree(vfd);
	}
}

/* In-queue VFD_RECV: queued on its VFD. True when the buffer was kept. */
static bool virtwl_event_recv(struct virtwl_info *vi, struct virtwl_in_buf *buf,
			      unsigned int len)
{
	const struct virtio_wl_ctrl_vfd_recv *ev = (const void *)buf->page;
	struct virtwl_vfd *vfd;
	u32 count;

	if (len < sizeof(*ev))
		return false;
	count = le32_to_cpu(ev->vfd_count);
	if (count > VIRTWL_SEND_MAX_ALLOCS || sizeof(*ev) + 4 * count > len)
		return false;
	buf->ids = (__le32 *)(buf->page + sizeof(*ev));
	buf->id_count = count;
	buf->data = buf->page + sizeof(*ev) + 4 * count;
	buf->data_len = len - sizeof(*ev) - 4 * count;
	if (!buf->id_count && !buf->data_len)
		return false;

	mutex_lock(&vi->vfds_lock);
	vfd = idr_find(&vi->vfds, le32_to_cpu(ev->vfd_id));
	if (vfd) {
		mutex_lock(&vfd->lock);
		list_add_tail(&buf->link, &vfd->in_queue);
		mutex_unlock(&vfd->lock);
		wake_up_interruptible_poll(&vfd->waitq, EPOLLIN | EPOLLRDNORM);
	}
	mutex_unlock(&vi->vfds_lock);
	if (!vfd) {
		unsigned int i;

		/* closed meanwhile: the VFDs it carries go too */
		for (i = 0; i < count; i++)
			virtwl_forget_host_vfd(vi, le32_to_cpu(buf->ids[i]));
	}
	return vfd != NULL;
}

/* VFD_HUP, and the extension's VFD_WRITABLE. */
static void virtwl_event_vfd_state(struct virtwl_info *vi, const u8 *page, unsigned int len,
				   bool hup)
{
	const struct virtio_wl_ctrl_vfd *ev = (const void *)page;
	struct virtwl_vfd *vfd;

	if (len < sizeof(*ev))
		return;
	mutex_lock(&vi->vfds_lock);
	vfd = idr_find(&vi->vfds, le32_to_cpu(ev->vfd_id));
	if (vfd) {
		mutex_lock(&vfd->lock);
		if (hup)
			vfd->hungup = true;
		else
			vfd->writable_events++;
		vfd->send_blocked = false;
		mutex_unlock(&vfd->lock);
		wake_up_interruptible_all(&vfd->waitq);
	}
	mutex_unlock(&vi->vfds_lock);
}

static void virtwl_in_work(struct work_struct *work)
{
	struct virtwl_info *vi = container_of(work, struct virtwl_info, in_work);
	struct virtwl_in_buf *buf;
	unsigned int len;
	bool kept;

	for (;;) {
		mutex_lock(&vi->in_lock);
		buf = virtqueue_get_buf(vi->in_vq, &len);
		mutex_unlock(&vi->in_lock);
		if (!buf)
			break;
		kept = false;
		if (len >= sizeof(struct virtio_wl_ctrl_hdr) && len <= VIRTWL_IN_BUFFER_SIZE) {
			switch (le32_to_cpu(((struct virtio_wl_ctrl_hdr *)buf->page)->type)) {
			case VIRTIO_WL_CMD_VFD_NEW:
				virtwl_event_vfd_new(vi, buf->page, len);
				break;
			case VIRTIO_WL_CMD_VFD_RECV:
				kept = virtwl_event_recv(vi, buf, len);
				break;
			case VIRTIO_WL_CMD_VFD_HUP:
				virtwl_event_vfd_state(vi, buf->page, len, true);
				break;
			case VIRTIO_WL_CMD_VFD_WRITABLE:
				if (vi->dontwait)
					virtwl_event_vfd_state(vi, buf->page, len, false);
				break;
			default:
				break;
			}
		}
		if (!kept)
			virtwl_in_post(vi, buf);
	}
}

static void virtwl_in_callback(struct virtqueue *vq)
{
	struct virtwl_info *vi = vq->vdev->priv;

	schedule_work(&vi->in_work);
}

/* --- VFD files ------------------------------------------------------------------------ */

/* A file and an fd number for a VFD, not yet visible: commit with fd_install. */
struct virtwl_new_fd {
	int fd;
	struct file *file;
};

static int virtwl_prepare_fd(struct virtwl_vfd *vfd, bool cloexec, struct virtwl_new_fd *out)
{
	out->fd = get_unused_fd_flags(cloexec ? O_CLOEXEC : 0);
	if (out->fd < 0)
		return out->fd;
	out->file = anon_inode_getfile("[virtwl_vfd]", &virtwl_vfd_fops, vfd, vfd->open_flags);
	if (IS_ERR(out->file)) {
		put_unused_fd(out->fd);
		return PTR_ERR(out->file);
	}
	return 0;
}

/* The file owns the VFD either way: dropping it closes the VFD. */
static void virtwl_abort_fd(struct virtwl_new_fd *nfd)
{
	put_unused_fd(nfd->fd);
	fput(nfd->file);
}

/*
 * Take bytes (and, when `ids` is given, the ids of the first message in them) off a VFD's
 * queue. Like a Unix stream socket: a read may span several messages, but fds arrive only
 * with the first byte of the message they came with, so it stops before a message carrying
 * fds once it has anything. read(2) passes no `ids`: the VFDs of what it consumes are closed,
 * as read(2) on a socket drops SCM_RIGHTS.
 *
 * Returns the bytes copied (0: end of file, or `len` was 0, which never waits) or -EAGAIN,
 * -ERESTARTSYS, -EFAULT.
 */
static ssize_t virtwl_vfd_recv(struct virtwl_vfd *vfd, u8 __user *ubuf, size_t len,
			       u32 *ids, unsigned int *id_count, bool nonblock)
{
	struct virtwl_in_buf *buf, *next;
	LIST_HEAD(done);
	size_t copied = 0;
	unsigned int n = 0, i;
	ssize_t ret = 0;

	mutex_lock(&vfd->lock);
	for (;;) {
		while (list_empty(&vfd->in_queue)) {
			/* nothing asked for, nothing waited for */
			if (vfd->hungup || !len)
				goto out;
			if (nonblock) {
				ret = -EAGAIN;
				goto out;
			}
			mutex_unlock(&vfd->lock);
			ret = wait_event_interruptible(vfd->waitq,
						       !list_empty_careful(&vfd->in_queue) ||
						       READ_ONCE(vfd->hungup));
			mutex_lock(&vfd->lock);
			if (ret)
				goto out;
		}
		list_for_each_entry_safe(buf, next, &vfd->in_queue, link) {
			size_t chunk;

			if (buf->id_count && ids) {
				if (copied || n)
					break;
				for (i = 0; i < buf->id_count; i++)
					ids[i] = le32_to_cpu(buf->ids[i]);
				n = buf->id_count;
				buf->id_count = 0;
			}
			chunk = min(buf->data_len, len - copied);
			if (chunk) {
				if (copy_to_user(ubuf + copied, buf->data, chunk)) {
					if (!copied && !n)
						ret = -EFAULT;
					break;
				}
				buf->data += chunk;
				buf->data_len -= chunk;
				copied += chunk;
			}
			if (!buf->data_len)
				list_move_tail(&buf->link, &done);
			if (copied == len)
				break;
		}
		/* read(2) that only met fds: they are gone, wait for bytes */
		if (copied || n || ret || !len)
			break;
	}
out:
	mutex_unlock(&vfd->lock);
	list_for_each_entry_safe(buf, next, &done, link) {
		list_del(&buf->link);
		for (i = 0; i < buf->id_count; i++)
			virtwl_forget_host_vfd(vfd->vi, le32_to_cpu(buf->ids[i]));
		virtwl_in_post(vfd->vi, buf);
	}
	if (id_count)
		*id_count = n;
	return ret ? ret : copied;
}

/*
 * Files for received host VFDs. fds[] gets an fd (not yet installed) or -1 for each id; one
 * that cannot be had (no fd left, an id the device never announced) is closed and counted in
 * the return value, which the extension reports as MSG_CTRUNC.
 */
static unsigned int virtwl_prepare_received(struct virtwl_info *vi, const u32 *ids,
					    unsigned int count, bool cloexec,
					    struct virtwl_new_fd *fds)
{
	unsigned int i, dropped = 0;

	for (i = 0; i < count; i++) {
		struct virtwl_vfd *vfd;

		fds[i].fd = -1;
		mutex_lock(&vi->vfds_lock);
		vfd = idr_find(&vi->vfds, ids[i]);
		if (vfd && !vfd->has_file)
			vfd->has_file = true;
		else
			vfd = NULL;
		mutex_unlock(&vi->vfds_lock);
		if (!vfd) {
			dropped++;
			continue;
		}
		if (virtwl_prepare_fd(vfd, cloexec, &fds[i])) {
			fds[i].fd = -1;
			mutex_lock(&vi->vfds_lock);
			vfd->has_file = false;
			mutex_unlock(&vi->vfds_lock);
			virtwl_forget_host_vfd(vi, ids[i]);
			dropped++;
		}
	}
	return dropped;
}

/*
 * RECV and the extension's RECV_FLAGS: `hdr_size` bytes of header at `arg` (fds[28], len and,
 * for the extension, flags), the data after it.
 */
static long virtwl_ioctl_recv(struct file *filp, void __user *arg, bool extension)
{
	struct virtwl_vfd *vfd = filp->private_data;
	size_t hdr_size = extension ? sizeof(struct virtwl_ioctl_msg) : sizeof(struct virtwl_ioctl_txn);
	struct virtwl_new_fd fds[VIRTWL_SEND_MAX_ALLOCS];
	u32 ids[VIRTWL_SEND_MAX_ALLOCS];
	struct virtwl_ioctl_msg hdr;	/* the txn is its first 116 bytes */
	unsigned int id_count = 0, dropped, i;
	bool nonblock = filp->f_flags & O_NONBLOCK;
	bool cloexec = true;
	ssize_t got;

	if (copy_from_user(&hdr, arg, hdr_size))
		return -EFAULT;
	/* Write the header back unchanged: a header we could not fill in later loses nothing. */
	if (copy_to_user(arg, &hdr, hdr_size))
		return -EFAULT;
	if (extension) {
		if (hdr.flags & ~VIRTWL_MSG_FLAGS_ALLOWED)
			return -EINVAL;
		nonblock |= hdr.flags & VIRTWL_MSG_DONTWAIT;
		cloexec = hdr.flags & VIRTWL_MSG_CMSG_CLOEXEC;
	}
	if (vfd->pfn)
		return -EINVAL;		/* shared memory never receives anything */

	got = virtwl_vfd_recv(vfd, (u8 __user *)arg + hdr_size, hdr.len, ids, &id_count,
			      nonblock);
	if (got < 0)
		return got;
	dropped = virtwl_prepare_received(vfd->vi, ids, id_count, cloexec, fds);
	for (i = 0; i < VIRTWL_SEND_MAX_ALLOCS; i++)
		hdr.fds[i] = i < id_count ? fds[i].fd : -1;
	hdr.len = got;
	hdr.flags = dropped ? VIRTWL_MSG_CTRUNC : 0;
	if (copy_to_user(arg, &hdr, hdr_size)) {
		for (i = 0; i < id_count; i++)
			if (fds[i].fd >= 0)
				virtwl_abort_fd(&fds[i]);
		return -EFAULT;
	}
	for (i = 0; i < id_count; i++)
		if (fds[i].fd >= 0)
			fd_install(fds[i].fd, fds[i].file);
	return extension ? got : 0;
}

static void virtwl_put_files(struct file **files, unsigned int count)
{
	while (count--)
		fput(files[count]);
}

/*
 * SEND: `len` bytes from `data` and the VFDs `fds` names (up to the first negative entry) as
 * one message. Returns 0 when the device took it all. `flags` are the extension's (0 for
 * ChromeOS's ioctl and write(2)).
 */
static int virtwl_vfd_send(struct file *filp, const u8 __user *data, size_t len, const int *fds,
			   u32 flags, bool extension)
{
	struct virtwl_vfd *vfd = filp->private_data;
	struct virtwl_info *vi = vfd->vi;
	struct file *files[VIRTWL_SEND_MAX_ALLOCS];
	struct virtio_wl_ctrl_vfd_send *cmd;
	bool nonblock = (filp->f_flags & O_NONBLOCK) || (flags & VIRTWL_MSG_DONTWAIT);
	bool dontwait = (flags & VIRTWL_MSG_DONTWAIT) && vi->dontwait;
	unsigned int nfds = 0, i;
	struct virtwl_req *req;
	size_t copied;
	u32 writable_events;
	u32 type;
	int ret;

	if (vfd->pfn)
		return -EINVAL;		/* shared memory is not a stream */
	if (len > VIRTWL_MAX_SEND_BYTES)
		return -EMSGSIZE;
	for (nfds = 0; nfds < VIRTWL_SEND_MAX_ALLOCS && fds[nfds] >= 0; nfds++) {
		struct file *f = fget(fds[nfds]);
		struct virtwl_vfd *sent;

		if (!f) {
			/* EBADFD is ChromeOS's answer (and a quirk); the extension says EBADF */
			ret = extension ? -EBADF : -EBADFD;
			goto put_files;
		}
		files[nfds] = f;
		sent = f->f_op == &virtwl_vfd_fops ? f->private_data : NULL;
		/* no virtio-gpu here: only VFDs can travel */
		if (!sent || !sent->id || sent->vi != vi) {
			nfds++;
			ret = -EINVAL;
			goto put_files;
		}
	}
	if (!len && !nfds)
		return 0;

	mutex_lock(&vfd->lock);
	if (extension && vfd->hungup) {
		mutex_unlock(&vfd->lock);
		ret = -EPIPE;
		goto put_files;
	}
	if (dontwait && vfd->send_blocked) {
		mutex_unlock(&vfd->lock);
		ret = -EAGAIN;
		goto put_files;
	}
	writable_events = vfd->writable_events;
	mutex_unlock(&vfd->lock);

	req = virtwl_req_alloc(len);
	if (!req) {
		ret = -ENOMEM;
		goto put_files;
	}
	for (i = 0, copied = 0; i < req->nchunks; i++) {
		size_t chunk = req->out_sg[i + 1].length;

		if (copy_from_user(req->chunks[i], data + copied, chunk)) {
			ret = -EFAULT;
			goto free_req;
		}
		copied += chunk;
	}
	cmd = (struct virtio_wl_ctrl_vfd_send *)req->cmd;
	cmd->hdr.type = cpu_to_le32(VIRTIO_WL_CMD_VFD_SEND);
	cmd->hdr.flags = cpu_to_le32(dontwait ? VIRTIO_WL_CTRL_FLAG_DONTWAIT : 0);
	cmd->vfd_id = cpu_to_le32(vfd->id);
	cmd->vfd_count = cpu_to_le32(nfds);
	for (i = 0; i < nfds; i++) {
		struct virtwl_vfd *sent = files[i]->private_data;

		((__le32 *)(cmd + 1))[i] = cpu_to_le32(sent->id);
	}
	ret = virtwl_req_submit(vi, req, sizeof(*cmd) + 4 * nfds, len,
				nonblock ? VIRTWL_NOWAIT : VIRTWL_WAIT);
	if (ret == -EINTR)
		goto put_files;		/* the callback frees req */
	if (ret)
		goto free_req;
	type = virtwl_resp_type(req);
	if (dontwait && type == VIRTIO_WL_RESP_WOULD_BLOCK) {
		mutex_lock(&vfd->lock);
		/* a VFD_WRITABLE that came meanwhile answers this WOULD_BLOCK already */
		if (vfd->writable_events == writable_events && !vfd->hungup)
			vfd->send_blocked = true;
		mutex_unlock(&vfd->lock);
		ret = -EAGAIN;
	} else {
		ret = virtwl_resp_errno(type);
		if (ret && extension && READ_ONCE(vfd->hungup))
			ret = -EPIPE;
	}
free_req:
	virtwl_req_free(req);
put_files:
	virtwl_put_files(files, nfds);
	if (ret == -EPIPE && !(flags & VIRTWL_MSG_NOSIGNAL))
		send_sig(SIGPIPE, current, 0);
	return ret;
}

static long virtwl_ioctl_send(struct file *filp, void __user *arg, bool extension)
{
	size_t hdr_size = extension ? sizeof(struct virtwl_ioctl_msg) : sizeof(struct virtwl_ioctl_txn);
	struct virtwl_ioctl_msg hdr = {};
	int ret;

	if (copy_from_user(&hdr, arg, hdr_size))
		return -EFAULT;
	if (extension && (hdr.flags & ~VIRTWL_MSG_FLAGS_ALLOWED))
		return -EINVAL;
	ret = virtwl_vfd_send(filp, (u8 __user *)arg + hdr_size, hdr.len, hdr.fds,
			      extension ? hdr.flags : 0, extension);
	if (ret)
		return ret;
	/* ChromeOS's SEND answers 0; the extension answers the byte count, as sendmsg(2) */
	return extension ? hdr.len : 0;
}

static long virtwl_ioctl_dmabuf_sync(struct file *filp, void __user *arg)
{
	struct virtwl_vfd *vfd = filp->private_data;
	struct virtio_wl_ctrl_vfd_dmabuf_sync *cmd;
	struct virtwl_ioctl_dmabuf_sync sync;
	struct virtwl_req *req;
	int ret;

	if (copy_from_user(&sync, arg, sizeof(sync)))
		return -EFAULT;
	if (sync.flags & ~0x7u)		/* DMA_BUF_SYNC_VALID_FLAGS_MASK */
		return -EINVAL;
	req = virtwl_req_alloc(0);
	if (!req)
		return -ENOMEM;
	cmd = (struct virtio_wl_ctrl_vfd_dmabuf_sync *)req->cmd;
	cmd->hdr.type = cpu_to_le32(VIRTIO_WL_CMD_VFD_DMABUF_SYNC);
	cmd->vfd_id = cpu_to_le32(vfd->id);
	cmd->flags = cpu_to_le32(sync.flags);
	ret = virtwl_req_submit(vfd->vi, req, sizeof(*cmd), 0, VIRTWL_WAIT);
	if (ret == -EINTR)
		return ret;
	if (!ret)
		ret = virtwl_resp_errno(virtwl_resp_type(req));
	virtwl_req_free(req);
	return ret;
}

static long virtwl_vfd_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case VIRTWL_IOCTL_SEND:
		return virtwl_ioctl_send(filp, uarg, false);
	case VIRTWL_IOCTL_RECV:
		return virtwl_ioctl_recv(filp, uarg, false);
	case VIRTWL_IOCTL_SEND_FLAGS:
		return virtwl_ioctl_send(filp, uarg, true);
	case VIRTWL_IOCTL_RECV_FLAGS:
		return virtwl_ioctl_recv(filp, uarg, true);
	case VIRTWL_IOCTL_DMABUF_SYNC:
		return virtwl_ioctl_dmabuf_sync(filp, uarg);
	default:
		return -ENOTTY;
	}
}

static ssize_t virtwl_vfd_read(struct file *filp, char __user *buf, size_t count, loff_t *pos)
{
	struct virtwl_vfd *vfd = filp->private_data;

	if (vfd->pfn)
		return -EINVAL;
	return virtwl_vfd_recv(vfd, (u8 __user *)buf, count, NULL, NULL,
			       filp->f_flags & O_NONBLOCK);
}

static ssize_t virtwl_vfd_write(struct file *filp, const char __user *buf, size_t count,
				loff_t *pos)
{
	static const int no_fds[1] = { -1 };
	int ret;

	count = min_t(size_t, count, VIRTWL_MAX_SEND_BYTES);
	ret = virtwl_vfd_send(filp, (const u8 __user *)buf, count, no_fds, 0, false);
	return ret ? ret : count;
}

static __poll_t virtwl_vfd_poll(struct file *filp, struct poll_table_struct *wait)
{
	struct virtwl_vfd *vfd = filp->private_data;
	struct virtwl_info *vi = vfd->vi;
	__poll_t mask = 0;

	poll_wait(filp, &vfd->waitq, wait);
	poll_wait(filp, &vi->out_waitq, wait);
	mutex_lock(&vfd->lock);
	if (!list_empty(&vfd->in_queue))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (vfd->hungup)
		mask |= EPOLLHUP;
	if (READ_ONCE(vi->out_vq->num_free) && !vfd->send_blocked)
		mask |= EPOLLOUT | EPOLLWRNORM;
	mutex_unlock(&vfd->lock);
	return mask;
}

static int virtwl_vfd_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct virtwl_vfd *vfd = filp->private_data;
	unsigned long pages = PAGE_ALIGN((unsigned long)vfd->size) >> PAGE_SHIFT;
	unsigned long len = vma->vm_end - vma->vm_start;

	if (!vfd->pfn)
		return -EACCES;
	if (vma->vm_pgoff >= pages || (len >> PAGE_SHIFT) > pages - vma->vm_pgoff)
		return -EINVAL;
	return io_remap_pfn_range(vma, vma->vm_start, vfd->pfn + vma->vm_pgoff, len,
				  vma->vm_page_prot);
}

/* The last reference to a VFD went: tell the device, give back what it holds. */
static void virtwl_vfd_close(struct virtwl_vfd *vfd)
{
	struct virtwl_info *vi = vfd->vi;
	bool host = vfd->id & VIRTIO_WL_VFD_ID_HOST_MASK;

	/*
	 * Guest ids: CLOSE is queued before the id is free for a NEW. Host ids: the id leaves
	 * the table before the device, which may reuse it once closed, hears of it.
	 */
	if (!host)
		virtwl_send_close(vi, vfd->id);
	mutex_lock(&vi->vfds_lock);
	idr_remove(&vi->vfds, vfd->id);
	mutex_unlock(&vi->vfds_lock);
	if (host)
		virtwl_send_close(vi, vfd->id);
	virtwl_vfd_free(vfd);
}

static int virtwl_vfd_release(struct inode *inode, struct file *filp)
{
	virtwl_vfd_close(filp->private_data);
	return 0;
}

static const struct file_operations virtwl_vfd_fops = {
	.owner = THIS_MODULE,
	.read = virtwl_vfd_read,
	.write = virtwl_vfd_write,
	.poll = virtwl_vfd_poll,
	.mmap = virtwl_vfd_mmap,
	.unlocked_ioctl = virtwl_vfd_ioctl,
	.release = virtwl_vfd_release,
	.llseek = no_llseek,
};

/* --- /dev/wl0 ------------------------------------------------------------------------- */

/* NEW: ask the device for a VFD of `cmd`'s kind; the reply fills in the VFD. */
static int virtwl_new_vfd(struct virtwl_info *vi, struct virtwl_ioctl_new *in, bool nonblock,
			  struct virtwl_vfd **out)
{
	struct virtio_wl_ctrl_vfd_new *cmd, *reply;
	struct virtwl_vfd *vfd;
	struct virtwl_req *req;
	u32 type, flags = 0, size = 0;
	int id, ret;

	switch (in->type) {
	case VIRTWL_IOCTL_NEW_CTX:
		type = VIRTIO_WL_CMD_VFD_NEW_CTX;
		flags = VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_READ;
		break;
	case VIRTWL_IOCTL_NEW_CTX_NAMED:
		type = VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED;
		flags = VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_READ;
		break;
	case VIRTWL_IOCTL_NEW_ALLOC:
		if (!in->size || in->size > U32_MAX - PAGE_SIZE + 1)
			return -EINVAL;
		type = VIRTIO_WL_CMD_VFD_NEW;
		size = PAGE_ALIGN(in->size);
		break;
	case VIRTWL_IOCTL_NEW_PIPE_READ:
		type = VIRTIO_WL_CMD_VFD_NEW_PIPE;
		flags = VIRTIO_WL_VFD_READ;
		break;
	case VIRTWL_IOCTL_NEW_PIPE_WRITE:
		type = VIRTIO_WL_CMD_VFD_NEW_PIPE;
		flags = VIRTIO_WL_VFD_WRITE;
		break;
	case VIRTWL_IOCTL_NEW_DMABUF:
		type = VIRTIO_WL_CMD_VFD_NEW_DMABUF;
		break;
	default:
		return -EINVAL;
	}

	vfd = virtwl_vfd_alloc(vi);
	req = virtwl_req_alloc(0);
	if (!vfd || !req) {
		ret = -ENOMEM;
		goto free;
	}
	mutex_lock(&vi->vfds_lock);
	id = idr_alloc(&vi->vfds, vfd, 1, VIRTWL_MAX_ALLOC, GFP_KERNEL);
	mutex_unlock(&vi->vfds_lock);
	if (id < 0) {
		ret = id;
		goto free;
	}
	vfd->id = id;

	cmd = (struct virtio_wl_ctrl_vfd_new *)req->cmd;
	cmd->hdr.type = cpu_to_le32(type);
	cmd->vfd_id = cpu_to_le32(id);
	cmd->flags = cpu_to_le32(flags);
	cmd->size = cpu_to_le32(size);
	if (type == VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED)
		memcpy(cmd->name, in->name, sizeof(cmd->name));
	if (type == VIRTIO_WL_CMD_VFD_NEW_DMABUF) {
		cmd->dmabuf.width = cpu_to_le32(in->dmabuf.width);
		cmd->dmabuf.height = cpu_to_le32(in->dmabuf.height);
		cmd->dmabuf.format = cpu_to_le32(in->dmabuf.format);
	}
	ret = virtwl_req_submit(vi, req, sizeof(*cmd), 0, nonblock ? VIRTWL_NOWAIT : VIRTWL_WAIT);
	if (ret == -EINTR)
		req = NULL;	/* the callback frees it; the device may have made the VFD */
	if (ret)
		goto remove;
	reply = (struct virtio_wl_ctrl_vfd_new *)req->resp;
	ret = virtwl_resp_errno(virtwl_resp_type(req));
	if (!ret && (req->used_len < offsetofend(struct virtio_wl_ctrl_vfd_new, size) ||
		     le32_to_cpu(reply->vfd_id) != id))
		ret = -EPROTO;
	if (ret)
		goto remove;

	vfd->flags = le32_to_cpu(reply->flags);
	vfd->size = le32_to_cpu(reply->size);
	vfd->pfn = virtwl_checked_pfn(vi, le64_to_cpu(reply->pfn), vfd->size);
	/*
	 * The device answers NEW_PIPE with flags 0 (crosvm does), which would make a write pipe
	 * read-only and write(2) fail (ChromeOS's driver has that bug): the direction asked for
	 * decides instead.
	 */
	if (type == VIRTIO_WL_CMD_VFD_NEW_PIPE)
		vfd->flags = flags;
	vfd->open_flags = virtwl_open_flags(vi, vfd->flags, vfd->pfn);
	if (type == VIRTIO_WL_CMD_VFD_NEW_DMABUF && req->used_len >= sizeof(*reply)) {
		in->dmabuf.width = le32_to_cpu(reply->dmabuf.width);
		in->dmabuf.height = le32_to_cpu(reply->dmabuf.height);
		in->dmabuf.format = le32_to_cpu(reply->dmabuf.format);
		in->dmabuf.stride0 = le32_to_cpu(reply->dmabuf.stride0);
		in->dmabuf.stride1 = le32_to_cpu(reply->dmabuf.stride1);
		in->dmabuf.stride2 = le32_to_cpu(reply->dmabuf.stride2);
		in->dmabuf.offset0 = le32_to_cpu(reply->dmabuf.offset0);
		in->dmabuf.offset1 = le32_to_cpu(reply->dmabuf.offset1);
		in->dmabuf.offset2 = le32_to_cpu(reply->dmabuf.offset2);
	}
	virtwl_req_free(req);
	*out = vfd;
	return 0;

remove:
	if (ret == -EINTR || ret == -EPROTO) {
		/* it may exist on the host: close it there like any VFD */
		virtwl_send_close(vi, id);
	}
	mutex_lock(&vi->vfds_lock);
	idr_remove(&vi->vfds, id);
	mutex_unlock(&vi->vfds_lock);
	virtwl_vfd_free(vfd);
	vfd = NULL;
free:
	if (req)
		virtwl_req_free(req);
	kfree(vfd);
	return ret;
}

static long virtwl_ioctl_new(struct file *filp, unsigned int cmd, void __user *arg)
{
	struct virtwl_info *vi = container_of(filp->private_data, struct virtwl_info, misc);
	/* the 2017 header's 16-byte struct works too: copy what the caller's number says */
	size_t size = min_t(size_t, _IOC_SIZE(cmd), sizeof(struct virtwl_ioctl_new));
	struct virtwl_ioctl_new in = {};
	struct virtwl_new_fd nfd;
	struct virtwl_vfd *vfd;
	int ret;

	if (copy_from_user(&in, arg, size))
		return -EFAULT;
	/* a dmabuf needs the whole union: only the 48-byte number can ask for one */
	if (in.type == VIRTWL_IOCTL_NEW_DMABUF && size != sizeof(in))
		return -EINVAL;
	ret = virtwl_new_vfd(vi, &in, filp->f_flags & O_NONBLOCK, &vfd);
	if (ret)
		return ret;
	vfd->has_file = true;
	ret = virtwl_prepare_fd(vfd, true, &nfd);
	if (ret) {
		virtwl_vfd_close(vfd);
		return ret;
	}
	in.fd = nfd.fd;
	if (copy_to_user(arg, &in, size)) {
		virtwl_abort_fd(&nfd);
		return -EFAULT;
	}
	fd_install(nfd.fd, nfd.file);
	return 0;
}

static long virtwl_dev_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	/* ChromeOS matches NEW by number alone, whatever the size and direction bits */
	if (_IOC_TYPE(cmd) == VIRTWL_IOCTL_BASE && _IOC_NR(cmd) == _IOC_NR(VIRTWL_IOCTL_NEW))
		return virtwl_ioctl_new(filp, cmd, (void __user *)arg);
	return -ENOTTY;
}

static const struct file_operations virtwl_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = virtwl_dev_ioctl,
	.llseek = no_llseek,
};

/* --- the virtio device ---------------------------------------------------------------- */

static int virtwl_validate(struct virtio_device *vdev)
{
	if (!event_idx)
		__virtio_clear_bit(vdev, VIRTIO_RING_F_EVENT_IDX);
	if (!send_dontwait)
		__virtio_clear_bit(vdev, VIRTIO_WL_F_SEND_DONTWAIT);
	return 0;
}

static int virtwl_probe(struct virtio_device *vdev)
{
	vq_callback_t *callbacks[VIRTWL_QUEUE_COUNT] = {
		[VIRTWL_VQ_IN] = virtwl_in_callback,
		[VIRTWL_VQ_OUT] = virtwl_out_callback,
	};
	static const char * const names[VIRTWL_QUEUE_COUNT] = {
		[VIRTWL_VQ_IN] = "in",
		[VIRTWL_VQ_OUT] = "out",
	};
	struct virtqueue *vqs[VIRTWL_QUEUE_COUNT];
	struct virtwl_info *vi;
	unsigned int i;
	int err;

	vi = kzalloc(sizeof(*vi), GFP_KERNEL);
	if (!vi)
		return -ENOMEM;
	vi->vdev = vdev;
	vdev->priv = vi;
	mutex_init(&vi->in_lock);
	INIT_WORK(&vi->in_work, virtwl_in_work);
	spin_lock_init(&vi->out_lock);
	init_waitqueue_head(&vi->out_waitq);
	mutex_init(&vi->vfds_lock);
	idr_init(&vi->vfds);
	vi->transition_flags = virtio_has_feature(vdev, VIRTIO_WL_F_TRANS_FLAGS);
	vi->dontwait = virtio_has_feature(vdev, VIRTIO_WL_F_SEND_DONTWAIT);
	vi->indirect = virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC);

	err = virtio_find_vqs(vdev, VIRTWL_QUEUE_COUNT, vqs, callbacks, names, NULL);
	if (err)
		goto free_vi;
	vi->in_vq = vqs[VIRTWL_VQ_IN];
	vi->out_vq = vqs[VIRTWL_VQ_OUT];

	vi->in_count = virtqueue_get_vring_size(vi->in_vq);
	vi->in_bufs = kcalloc(vi->in_count, sizeof(*vi->in_bufs), GFP_KERNEL);
	if (!vi->in_bufs) {
		err = -ENOMEM;
		goto del_vqs;
	}
	for (i = 0; i < vi->in_count; i++) {
		struct virtwl_in_buf *buf = &vi->in_bufs[i];
		struct scatterlist sg;

		buf->page = (u8 *)__get_free_page(GFP_KERNEL);
		if (!buf->page) {
			err = -ENOMEM;
			goto free_bufs;
		}
		sg_init_one(&sg, buf->page, VIRTWL_IN_BUFFER_SIZE);
		err = virtqueue_add_inbuf(vi->in_vq, &sg, 1, buf, GFP_KERNEL);
		if (err)
			goto free_bufs;
	}

	virtio_device_ready(vdev);
	virtqueue_kick(vi->in_vq);

	vi->misc.minor = MISC_DYNAMIC_MINOR;
	vi->misc.name = "wl0";
	vi->misc.fops = &virtwl_dev_fops;
	vi->misc.mode = 0666;
	err = misc_register(&vi->misc);
	if (err)
		goto reset;
	dev_info(&vdev->dev, "/dev/wl0: %u in buffers, event_idx %d, trans_flags %d, send_dontwait %d\n",
		 vi->in_count, virtio_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX),
		 vi->transition_flags, vi->dontwait);
	return 0;

reset:
	virtio_reset_device(vdev);
free_bufs:
	for (i = 0; i < vi->in_count; i++)
		free_page((unsigned long)vi->in_bufs[i].page);
	kfree(vi->in_bufs);
del_vqs:
	vdev->config->del_vqs(vdev);
free_vi:
	kfree(vi);
	return err;
}

/*
 * Our kernels have no modules and no hot-unplug, and unbinding is refused
 * (suppress_bind_attrs); should the transport remove the device anyway, open VFDs keep
 * `vi`, which is then never freed.
 */
static void virtwl_remove(struct virtio_device *vdev)
{
	struct virtwl_info *vi = vdev->priv;

	misc_deregister(&vi->misc);
	virtio_reset_device(vdev);
	cancel_work_sync(&vi->in_work);
	vdev->config->del_vqs(vdev);
}

static const struct virtio_device_id virtwl_id_table[] = {
	{ VIRTIO_ID_WL, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static const unsigned int virtwl_features[] = {
	VIRTIO_WL_F_TRANS_FLAGS,
	VIRTIO_WL_F_SEND_DONTWAIT,
};

static struct virtio_driver virtwl_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.driver.suppress_bind_attrs = true,
	.id_table = virtwl_id_table,
	.feature_table = virtwl_features,
	.feature_table_size = ARRAY_SIZE(virtwl_features),
	.feature_table_legacy = virtwl_features,
	.feature_table_size_legacy = ARRAY_SIZE(virtwl_features),
	.validate = virtwl_validate,
	.probe = virtwl_probe,
	.remove = virtwl_remove,
};

module_virtio_driver(virtwl_driver);
MODULE_DEVICE_TABLE(virtio, virtwl_id_table);
MODULE_DESCRIPTION("virtio-wl (virtio wayland) guest driver");
MODULE_LICENSE("Dual MIT/GPL");
