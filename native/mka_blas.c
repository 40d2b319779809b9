/*
 * mka_blas: a small Node-API addon that runs float32 matrix products over OpenBLAS, reading and
 * writing directly in a caller's typed array (the tfjs wasm heap, so no copies are made).
 *
 * gemm(heap, aOff, bOff, cOff, M, N, K, transA, transB, batch, idx, biasOff, biasLen, act)
 *   heap     any TypedArray (offsets are in bytes from its first byte)
 *   a        [batchA, M, K] ([batchA, K, M] when transA), b [batchB, K, N] ([batchB, N, K] when transB)
 *   c        [batch, M, N], written
 *   idx      null (batch i uses a[i], b[i]) or an Int32Array of 2*batch entries: a index, b index
 *   biasOff  byte offset of a bias of biasLen floats (1 or N) added to every row, or -1 for none
 *   act      0 linear, 1 relu, 2 relu6
 * info()            { corename, config, threads, procs }
 * setThreads(n)
 */
#include <node_api.h>
#include <cblas.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
int openblas_get_num_procs(void);
char *openblas_get_config(void);
char *openblas_get_corename(void);

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "mka_blas: N-API call failed: " #call); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static bool get_i64(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

static bool get_bool(napi_env env, napi_value v, bool *out) {
  return napi_get_value_bool(env, v, out) == napi_ok;
}

/* Data pointer and byte length of a TypedArray. */
static bool typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *bytes) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  napi_value buffer;
  size_t byte_offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &buffer, &byte_offset) != napi_ok) return false;
  size_t elem = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: elem = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
    default: elem = 1;
  }
  *data = (uint8_t *)ptr;
  *bytes = length * elem;
  return true;
}

static bool in_bounds(int64_t off, int64_t count, size_t heap_bytes) {
  return off >= 0 && count >= 0 && (off % 4) == 0 && (uint64_t)(off + 4 * count) <= heap_bytes;
}

static void bias_and_activation(float *c, int64_t rows, int64_t n, const float *bias, int64_t bias_len, int act) {
  for (int64_t i = 0; i < rows; i++) {
    float *row = c + i * n;
    if (bias) {
      if (bias_len == 1) {
        const float b0 = bias[0];
        for (int64_t j = 0; j < n; j++) row[j] += b0;
      } else {
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];
      }
    }
    if (act == 1) {
      for (int64_t j = 0; j < n; j++) row[j] = row[j] < 0.f ? 0.f : row[j];
    } else if (act == 2) {
      for (int64_t j = 0; j < n; j++) row[j] = row[j] < 0.f ? 0.f : (row[j] > 6.f ? 6.f : row[j]);
    }
  }
}

static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value argv[14];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 14) {
    napi_throw_type_error(env, NULL, "mka_blas.gemm: expects 14 arguments");
    return NULL;
  }
  uint8_t *heap;
  size_t heap_bytes;
  if (!typed_bytes(env, argv[0], &heap, &heap_bytes)) {
    napi_throw_type_error(env, NULL, "mka_blas.gemm: heap must be a TypedArray");
    return NULL;
  }
  int64_t a_off, b_off, c_off, m, n, k, batch, bias_off, bias_len, act;
  bool trans_a, trans_b;
  if (!get_i64(env, argv[1], &a_off) || !get_i64(env, argv[2], &b_off) || !get_i64(env, argv[3], &c_off) ||
      !get_i64(env, argv[4], &m) || !get_i64(env, argv[5], &n) || !get_i64(env, argv[6], &k) ||
      !get_bool(env, argv[7], &trans_a) || !get_bool(env, argv[8], &trans_b) || !get_i64(env, argv[9], &batch) ||
      !get_i64(env, argv[11], &bias_off) || !get_i64(env, argv[12], &bias_len) || !get_i64(env, argv[13], &act)) {
    napi_throw_type_error(env, NULL, "mka_blas.gemm: bad argument types");
    return NULL;
  }
  if (m < 0 || n < 0 || k < 0 || batch < 0 || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || act < 0 || act > 2) {
    napi_throw_range_error(env, NULL, "mka_blas.gemm: bad dimensions or activation");
    return NULL;
  }
  const int32_t *idx = NULL;
  napi_valuetype idx_type;
  CHECK(env, napi_typeof(env, argv[10], &idx_type));
  if (idx_type != napi_null && idx_type != napi_undefined) {
    uint8_t *idx_bytes;
    size_t idx_len;
    if (!typed_bytes(env, argv[10], &idx_bytes, &idx_len) || idx_len < (size_t)(8 * batch)) {
      napi_throw_type_error(env, NULL, "mka_blas.gemm: idx must be an Int32Array of 2*batch entries");
      return NULL;
    }
    idx = (const int32_t *)idx_bytes;
  }
  /* Largest batch index used for a and b, to check every access stays inside the heap. */
  int64_t max_a = batch > 0 ? batch - 1 : 0, max_b = max_a;
  if (idx) {
    max_a = max_b = 0;
    for (int64_t i = 0; i < batch; i++) {
      if (idx[2 * i] < 0 || idx[2 * i + 1] < 0) {
        napi_throw_range_error(env, NULL, "mka_blas.gemm: negative batch index");
        return NULL;
      }
      if (idx[2 * i] > max_a) max_a = idx[2 * i];
      if (idx[2 * i + 1] > max_b) max_b = idx[2 * i + 1];
    }
  }
  const bool has_bias = bias_off >= 0;
  if (!in_bounds(a_off, (max_a + 1) * m * k, heap_bytes) || !in_bounds(b_off, (max_b + 1) * k * n, heap_bytes) ||
      !in_bounds(c_off, batch * m * n, heap_bytes) ||
      (has_bias && (!(bias_len == 1 || bias_len == n) || !in_bounds(bias_off, bias_len, heap_bytes)))) {
    napi_throw_range_error(env, NULL, "mka_blas.gemm: operand outside the heap, misaligned, or bad bias length");
    return NULL;
  }
  const float *a = (const float *)(heap + a_off);
  const float *b = (const float *)(heap + b_off);
  float *c = (float *)(heap + c_off);
  const float *bias = has_bias ? (const float *)(heap + bias_off) : NULL;
  const int lda = trans_a ? (int)m : (int)k;
  const int ldb = trans_b ? (int)k : (int)n;
  for (int64_t i = 0; i < batch; i++) {
    const int64_t ia = idx ? idx[2 * i] : i;
    const int64_t ib = idx ? idx[2 * i + 1] : i;
    float *ci = c + i * m * n;
    if (k == 0) {
      memset(ci, 0, sizeof(float) * (size_t)(m * n));
    } else if (m > 0 && n > 0) {
      cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                  (int)m, (int)n, (int)k, 1.0f, a + ia * m * k, lda, b + ib * k * n, ldb, 0.0f, ci, (int)n);
    }
    if (has_bias || act != 0) bias_and_activation(ci, m, n, bias, bias_len, (int)act);
  }
  return NULL;
}

static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t n = 0;
  if (argc < 1 || !get_i64(env, argv[0], &n) || n < 1 || n > 1024) {
    napi_throw_range_error(env, NULL, "mka_blas.setThreads: expects an integer from 1 to 1024");
    return NULL;
  }
  openblas_set_num_threads((int)n);
  return NULL;
}

static napi_value set_string(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  if (napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, key, v) != napi_ok) return NULL;
  return obj;
}

static napi_value set_int(napi_env env, napi_value obj, const char *key, int value) {
  napi_value v;
  if (napi_create_int32(env, value, &v) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, key, v) != napi_ok) return NULL;
  return obj;
}

static napi_value get_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj;
  CHECK(env, napi_create_object(env, &obj));
  if (!set_string(env, obj, "corename", openblas_get_corename()) ||
      !set_string(env, obj, "config", openblas_get_config()) ||
      !set_int(env, obj, "threads", openblas_get_num_threads()) ||
      !set_int(env, obj, "procs", openblas_get_num_procs())) {
    napi_throw_error(env, NULL, "mka_blas.info: N-API call failed");
    return NULL;
  }
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, get_info, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
