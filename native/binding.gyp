{
  "targets": [
    {
      "target_name": "mka_native",
      "sources": ["addon.c", "cpu.c", "threads.c", "gemm.c", "linear.c", "quant.c", "ops.c", "layer.c", "kern_generic.c", "kern_avx2.c", "kern_avx512.c", "kern_bf16.c", "kern_amx.c", "kern_int8.c", "peak.c", "blas_probe.c"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wno-unknown-pragmas", "-fno-math-errno", "-pthread"],
      "cflags!": ["-O2"],
      "ldflags": ["-pthread"],
      "libraries": ["-lm", "-ldl"],
      "defines": ["NAPI_VERSION=8"],
      "xcode_settings": {"OTHER_CFLAGS": ["-O3", "-std=gnu11"]}
    }
  ]
}
