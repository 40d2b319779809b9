/* CPU detection: which instruction-set path the kernels take, chosen once at load. */
#define _GNU_SOURCE
#include "mka.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#if MKA_X86
#include <cpuid.h>
#endif

static mka_cpu state;

const char *isa_name(int isa) {
  return isa == ISA_AVX512 ? "avx512" : isa == ISA_AVX2 ? "avx2" : "generic";
}

static void model_name(char *out, size_t cap) {
  snprintf(out, cap, "unknown");
#if MKA_X86
  unsigned r[12];
  unsigned max = __get_cpuid_max(0x80000000u, NULL);
  if (max >= 0x80000004u) {
    for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char brand[49];
    memcpy(brand, r, 48);
    brand[48] = 0;
    char *s = brand;
    while (*s == ' ') s++;
    size_t len = strlen(s);
    while (len && s[len - 1] == ' ') s[--len] = 0;
    snprintf(out, cap, "%s", s);
  }
#else
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "model name", 10) || !strncmp(line, "Model", 5) || !strncmp(line, "CPU part", 8)) {
      char *v = strchr(line, ':');
      if (v) {
        v++;
        while (*v == ' ') v++;
        v[strcspn(v, "\n")] = 0;
        snprintf(out, cap, "%s", v);
        break;
      }
    }
  }
  fclose(f);
#endif
}

#if MKA_X86 && defined(__linux__)
#include <sys/syscall.h>
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static unsigned long long xgetbv0(void) {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}

/* Asks Linux for the AMX tile data state (needed once per process before any tile instruction); 1 when granted. */
static int amx_permission(char *note, size_t cap) {
  unsigned long long perm = 0;
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
    snprintf(note, cap, "the kernel refused AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)");
    return 0;
  }
  if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0 || !(perm & (1ULL << XFEATURE_XTILEDATA))) {
    snprintf(note, cap, "AMX tile state not granted by the kernel");
    return 0;
  }
  if ((xgetbv0() & (3ULL << 17)) != (3ULL << 17)) {
    snprintf(note, cap, "the OS has not enabled AMX state in XCR0");
    return 0;
  }
  return 1;
}
#endif

/* Palette 1 as the AMX kernels use it: 8 tiles of 16 rows of 64 bytes. */
__attribute__((unused)) static int amx_palette_ok(void) {
#if MKA_X86
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, NULL) < 0x1d) return 0;
  __cpuid_count(0x1d, 0, a, b, c, d);
  if (a < 1) return 0;
  __cpuid_count(0x1d, 1, a, b, c, d);
  /* EAX: total tile bytes | bytes per tile << 16; EBX: bytes per row | max names << 16; ECX: max rows */
  return (b & 0xffff) >= 64 && (b >> 16) >= 8 && (c & 0xffff) >= 16;
#else
  return 0;
#endif
}

int cpu_init(const char *forced) {
  memset(&state, 0, sizeof state);
  long procs = sysconf(_SC_NPROCESSORS_ONLN);
  state.procs = procs > 0 ? (int)procs : 1;
  model_name(state.cpu, sizeof state.cpu);
  state.best_isa = ISA_GENERIC;
#if MKA_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) state.best_isa = ISA_AVX2;
  if (state.best_isa == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    state.best_isa = ISA_AVX512;
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, NULL) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    state.has_vnni = state.best_isa == ISA_AVX512 && (c & (1u << 11)) != 0;
    /* AMX-BF16 (bit 22), AMX-TILE (24), AMX-INT8 (25) */
    state.has_amx = state.best_isa == ISA_AVX512 && (d & (1u << 22)) && (d & (1u << 24)) && (d & (1u << 25));
    __cpuid_count(7, 1, a, b, c, d);
    state.has_bf16 = state.best_isa == ISA_AVX512 && (a & (1u << 5)) != 0;
  }
#endif
  state.level = LEVEL_AMX;
  if (forced && *forced) {
    static const char *const names[] = {"generic", "avx2", "avx512", "vnni", "bf16", "amx"};
    int want = -1;
    for (int i = 0; i <= LEVEL_AMX; i++)
      if (!strcmp(forced, names[i])) want = i;
    if (!strcmp(forced, "amx-emulated")) {
      want = LEVEL_AMX;
      state.amx_emulated = 1;
    }
    if (want < 0) return -1;
    state.level = want;
  }
  const int cap = state.level < ISA_AVX512 ? state.level : ISA_AVX512;
  state.isa = state.best_isa < cap ? state.best_isa : cap;
  state.vnni = state.has_vnni && state.level >= LEVEL_VNNI;
  state.bf16 = state.has_bf16 && state.level >= LEVEL_BF16;
  if (state.has_amx && state.level >= LEVEL_AMX && !state.amx_emulated) {
#if MKA_X86 && defined(__linux__) && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
    if (!amx_palette_ok()) snprintf(state.amx_note, sizeof state.amx_note, "AMX palette 1 has fewer than 8 tiles of 16x64 bytes");
    else state.amx_os = amx_permission(state.amx_note, sizeof state.amx_note);
#else
    snprintf(state.amx_note, sizeof state.amx_note, "built by a compiler without AMX intrinsics (GCC 11 / clang 12 have them)");
#endif
    state.amx = state.amx_os;
  }
  return 0;
}

const mka_cpu *cpu_get(void) { return &state; }

const char *bf16_kernel_name(void) {
  static const char *const emulated[] = {"emulated-generic", "emulated-avx2", "emulated-avx512"};
  if (state.amx_emulated) return "amx-emulated";
  if (state.amx) return "amx";
  if (state.bf16) return "avx512bf16";
  return emulated[state.isa];
}

const char *int8_kernel_name(void) {
  if (state.vnni) return "vnni";
  return state.isa == ISA_AVX512 ? "avx512bw" : state.isa == ISA_AVX2 ? "avx2" : "generic";
}
