/**
 * The VmmError hierarchy: every error vmm raises on purpose carries a stable `code`
 * (`ERR_*`) that callers and tests match on, and a message written for the person running
 * the VM (it names the file, device or address range involved and what was wrong with it).
 *
 * Subclasses are listed alphabetically. Each sets `name` explicitly rather than relying on
 * `constructor.name`, so stack traces stay readable even if the code is bundled or minified.
 */

export class VmmError extends Error {
  /** Stable machine-readable identifier, e.g. `ERR_BUS_OVERLAP`. Never reworded. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'VmmError';
  }
}

/** A device range on the PIO or MMIO bus overlaps one that is already registered. */
export class BusOverlapError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BUS_OVERLAP', message, options);
    this.name = 'BusOverlapError';
  }
}

/** A device range is empty, not integral, or does not fit in the bus's address space. */
export class BusRangeError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BUS_RANGE', message, options);
    this.name = 'BusRangeError';
  }
}

/** The VM configuration (file, CLI flags or API call) asks for something impossible. */
export class ConfigError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options);
    this.name = 'ConfigError';
  }
}

/** A guest-physical range is malformed or not backed by a single RAM region. */
export class GuestMemoryError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_GUEST_MEMORY_RANGE', message, options);
    this.name = 'GuestMemoryError';
  }
}

/** The kernel, guest image or initrd cannot be loaded (bad format, does not fit, …). */
export class KernelLoadError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_KERNEL_LOAD', message, options);
    this.name = 'KernelLoadError';
  }
}

/** A KVM ioctl failed or KVM lacks a capability vmm needs. */
export class KvmError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_KVM', message, options);
    this.name = 'KvmError';
  }
}

/** A plugin is malformed or failed while being applied or running. */
export class PluginError extends VmmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PLUGIN', message, options);
    this.name = 'PluginError';
  }
}

/**
 * The message of anything thrown. Errors from the native addon come from another realm and are
 * not `instanceof Error` here, so this looks for a string `message` instead.
 */
export function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}
