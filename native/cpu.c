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

int cpu_init(const char *forced, const char *bf16_dot) {
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
    __cpuid_count(7, 1, a, b, c, d);
    state.bf16_dot = state.best_isa == ISA_AVX512 && (a & (1u << 5)) != 0;
    __cpuid_count(7, 0, a, b, c, d);
    state.amx = (d & (1u << 24)) != 0; /* AMX-TILE */
  }
#endif
  state.isa = state.best_isa;
  if (forced && *forced) {
    int want = !strcmp(forced, "generic") ? ISA_GENERIC : !strcmp(forced, "avx2") ? ISA_AVX2 : !strcmp(forced, "avx512") ? ISA_AVX512 : -1;
    if (want < 0) return -1;
    if (want < state.isa) state.isa = want;
  }
  if (state.isa < ISA_AVX512) state.bf16_dot = 0;
  state.bf16_dot_on = state.bf16_dot && bf16_dot && !strcmp(bf16_dot, "1");
  return 0;
}

const mka_cpu *cpu_get(void) { return &state; }
