{
  "targets": [
    {
      "target_name": "mka_blas",
      "sources": ["mka_blas.c"],
      "include_dirs": ["/usr/include/openblas"],
      "libraries": ["-lopenblas"],
      "cflags": ["-O2", "-std=c11", "-Wall"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
