/**
 * CPUID feature hiding. Names follow Linux's /proc/cpuinfo flags; each maps to the leaf,
 * register and bit given in the Intel SDM vol. 2A, CPUID, tables 3-10/3-11 and 3-8 (leaf 7).
 */
import type { CpuidEntry } from '../../native/types';
import { ConfigError } from '../errors';

type Register = 'eax' | 'ebx' | 'ecx' | 'edx';

interface FeatureBit {
  leaf: number;
  subleaf: number;
  register: Register;
  bit: number;
}

export const CPUID_FEATURES: Readonly<Record<string, FeatureBit>> = Object.freeze({
  // leaf 1, ecx
  pcid: { leaf: 1, subleaf: 0, register: 'ecx', bit: 17 },
  cx16: { leaf: 1, subleaf: 0, register: 'ecx', bit: 13 },
  movbe: { leaf: 1, subleaf: 0, register: 'ecx', bit: 22 },
  popcnt: { leaf: 1, subleaf: 0, register: 'ecx', bit: 23 },
  xsave: { leaf: 1, subleaf: 0, register: 'ecx', bit: 26 },
  osxsave: { leaf: 1, subleaf: 0, register: 'ecx', bit: 27 },
  avx: { leaf: 1, subleaf: 0, register: 'ecx', bit: 28 },
  rdrand: { leaf: 1, subleaf: 0, register: 'ecx', bit: 30 },
  x2apic: { leaf: 1, subleaf: 0, register: 'ecx', bit: 21 },
  tsc_deadline_timer: { leaf: 1, subleaf: 0, register: 'ecx', bit: 24 },
  // leaf 7 subleaf 0, ebx
  fsgsbase: { leaf: 7, subleaf: 0, register: 'ebx', bit: 0 },
  smep: { leaf: 7, subleaf: 0, register: 'ebx', bit: 7 },
  invpcid: { leaf: 7, subleaf: 0, register: 'ebx', bit: 10 },
  rdseed: { leaf: 7, subleaf: 0, register: 'ebx', bit: 18 },
  smap: { leaf: 7, subleaf: 0, register: 'ebx', bit: 20 },
  avx2: { leaf: 7, subleaf: 0, register: 'ebx', bit: 5 },
});

/** Leaves that only describe xsave state; with xsave hidden they must vanish too. */
const XSAVE_LEAF = 0xd;

/** Features that cannot exist without another (AVX state lives in the xsave area). */
const IMPLIED_HIDES: Readonly<Record<string, readonly string[]>> = { xsave: ['osxsave', 'avx', 'avx2'] };

/** Throws ConfigError for names we do not know, listing the known ones. */
export function checkCpuidNames(names: readonly string[], source: string): void {
  for (const name of names) {
    if (!(name in CPUID_FEATURES)) {
      throw new ConfigError(`${source}: unknown CPUID feature '${name}' in cpuidHide; known features: ${Object.keys(CPUID_FEATURES).join(', ')}.`);
    }
  }
}

/** Returns a copy of KVM's supported CPUID with the named features cleared. */
export function maskCpuid(entries: readonly CpuidEntry[], hide: readonly string[]): CpuidEntry[] {
  const hideXsave = hide.includes('xsave');
  const out = entries
    .filter((e) => !(hideXsave && e.function === XSAVE_LEAF))
    .map((e) => ({ ...e }));
  const all = new Set(hide.flatMap((name) => [name, ...(IMPLIED_HIDES[name] ?? [])]));
  for (const name of all) {
    const f = CPUID_FEATURES[name];
    for (const e of out) {
      if (e.function === f.leaf && e.index === f.subleaf) e[f.register] = (e[f.register] & ~(1 << f.bit)) >>> 0;
    }
  }
  return out;
}
