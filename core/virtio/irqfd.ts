/**
 * An interrupt the main thread injects without a KVM_IRQ_LINE call per edge: an eventfd bound
 * to a GSI with KVM_IRQFD. Writing 1 to the eventfd makes KVM pulse the line (edge).
 */
import { native } from '../../native';

export interface Irqfd {
  readonly gsi: number;
  /** Pulse the line; a no-op after close. */
  trigger(): void;
  /** Deassign from KVM and close the eventfd; idempotent. Call while the VM fd is open. */
  close(): void;
}

export function createIrqfd(vmFd: number, gsi: number): Irqfd {
  const fd = native.eventfdCreate(0);
  try {
    native.irqfd(vmFd, fd, gsi);
  } catch (error) {
    native.close(fd);
    throw error;
  }
  let open = true;
  return {
    gsi,
    trigger() {
      // EAGAIN only if the counter is about to overflow, i.e. KVM is not consuming: harmless.
      if (open) native.eventfdWrite(fd, 1n);
    },
    close() {
      if (!open) return;
      open = false;
      try {
        native.irqfd(vmFd, fd, gsi, true);
      } finally {
        native.close(fd);
      }
    },
  };
}
