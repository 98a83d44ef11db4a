/**
 * A guest write that becomes an eventfd signal inside KVM (KVM_IOEVENTFD): the vCPU does not
 * leave the kernel, and the main thread learns of it from the libuv loop.
 */
import { native } from '../../native';
import type { Disposable, IoEventOptions } from '../../plugin-api';

export function createIoEvent(vmFd: number, options: IoEventOptions): Disposable {
  const fd = native.eventfdCreate(0);
  const pio = options.pio ?? false;
  try {
    native.ioeventfd(vmFd, fd, options.address, options.length, pio, options.datamatch);
  } catch (error) {
    native.close(fd);
    throw error;
  }
  const watcher = new native.FdWatcher(fd, () => {
    const count = native.eventfdRead(fd);
    if (count !== null) options.onNotify(count);
  });
  watcher.start(native.POLL_READABLE);
  // The vCPU threads keep the process alive while the VM runs; this watcher must not.
  watcher.unref();
  let disposed = false;
  return {
    dispose() {
      if (disposed) return;
      disposed = true;
      watcher.close();
      native.ioeventfd(vmFd, fd, options.address, options.length, pio, options.datamatch, true);
      native.close(fd);
    },
  };
}
