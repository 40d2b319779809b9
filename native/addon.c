/*
 * mka_native: Node-API glue. Each kernel takes one descriptor object (src/runtime/native-addon.ts
 * spells them out) that becomes one C struct. An operand is a property holding an ArrayBufferView
 * plus, optionally, `<name>Offset` in bytes: the pointer is the view's own data (its byteOffset
 * included) plus that offset, checked against the view's byte length and the element alignment. A
 * bad descriptor throws a RangeError naming the function and the field.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include "mka.h"
#include "blas_probe.h"

double peak_gflops(int kind, double seconds, double *per_cpu_second);

typedef struct {
  napi_env env;
  const char *fn;
  napi_value argv[2];
  size_t argc;
  bool failed;
  const char *where; /* the descriptor being read (a weight), named in messages */
} call_t;

static bool fail(call_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Throws a RangeError "mka_native.<fn>: <message>" (once per call) and returns false. */
static bool fail(call_t *c, const char *fmt, ...) {
  if (c->failed) return false;
  char msg[400], detail[320];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  if (c->where) snprintf(msg, sizeof msg, "mka_native.%s: %s: %s", c->fn, c->where, detail);
  else snprintf(msg, sizeof msg, "mka_native.%s: %s", c->fn, detail);
  napi_throw_range_error(c->env, NULL, msg);
  c->failed = true;
  return false;
}

/* Starts a call that takes `want` arguments (0, 1 or 2); a descriptor argument must be an object. */
static bool begin(call_t *c, napi_env env, napi_callback_info info, const char *fn, size_t want, bool object) {
  c->env = env;
  c->fn = fn;
  c->failed = false;
  c->where = NULL;
  c->argc = 2;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) return fail(c, "bad call");
  if (c->argc < want) return fail(c, "expects %zu argument%s, got %zu", want, want == 1 ? "" : "s", c->argc);
  if (object) {
    napi_valuetype t;
    if (napi_typeof(env, c->argv[0], &t) != napi_ok || t != napi_object) return fail(c, "expects a descriptor object");
  }
  return true;
}

/* The property `key` of obj, or NULL when it is absent, null or undefined. */
static napi_value field(call_t *c, napi_value obj, const char *key) {
  napi_value v;
  napi_valuetype t;
  if (c->failed) return NULL;
  if (napi_get_named_property(c->env, obj, key, &v) != napi_ok || napi_typeof(c->env, v, &t) != napi_ok) {
    fail(c, "%s: bad value", key);
    return NULL;
  }
  return t == napi_null || t == napi_undefined ? NULL : v;
}

/* An integer field in [lo, hi]; `def` when absent if optional. */
static bool int_field(call_t *c, napi_value obj, const char *key, int64_t lo, int64_t hi, bool optional, int64_t def, int64_t *out) {
  double d;
  napi_value v = field(c, obj, key);
  if (c->failed) return false;
  if (!v) {
    if (!optional) return fail(c, "%s is required", key);
    *out = def;
    return true;
  }
  if (napi_get_value_double(c->env, v, &d) != napi_ok) return fail(c, "%s must be a number", key);
  if (!(d == floor(d)) || d < (double)lo || d > (double)hi) return fail(c, "%s = %g is not an integer from %lld to %lld", key, d, (long long)lo, (long long)hi);
  *out = (int64_t)d;
  return true;
}

static bool num_field(call_t *c, napi_value obj, const char *key, double *out) {
  napi_value v = field(c, obj, key);
  if (c->failed) return false;
  if (!v || napi_get_value_double(c->env, v, out) != napi_ok || !isfinite(*out)) return fail(c, "%s must be a finite number", key);
  return true;
}

/* A boolean field (a number counts: nonzero is true); false when absent. */
static bool bool_field(call_t *c, napi_value obj, const char *key, bool *out) {
  napi_valuetype t;
  napi_value v = field(c, obj, key);
  *out = false;
  if (c->failed) return false;
  if (!v) return true;
  napi_typeof(c->env, v, &t);
  if (t == napi_boolean) return napi_get_value_bool(c->env, v, out) == napi_ok;
  if (t == napi_number) {
    double d;
    napi_get_value_double(c->env, v, &d);
    *out = d != 0;
    return true;
  }
  return fail(c, "%s must be a boolean", key);
}

/* The bytes of an ArrayBufferView value; *type is its typed-array type (napi_uint8_array for a DataView). */
static bool view_bytes(call_t *c, napi_value v, const char *name, uint8_t **data, size_t *bytes, napi_typedarray_type *type) {
  bool yes = false;
  if (c->failed) return false;
  if (napi_is_typedarray(c->env, v, &yes) == napi_ok && yes) {
    size_t length, offset;
    void *ptr;
    napi_value buf;
    napi_get_typedarray_info(c->env, v, type, &length, &ptr, &buf, &offset);
    size_t es;
    switch (*type) {
      case napi_int16_array: case napi_uint16_array: es = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: es = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: es = 8; break;
      default: es = 1;
    }
    *data = ptr;
    *bytes = length * es;
    return true;
  }
  if (napi_is_dataview(c->env, v, &yes) == napi_ok && yes) {
    size_t length, offset;
    void *ptr;
    napi_value buf;
    napi_get_dataview_info(c->env, v, &length, &ptr, &buf, &offset);
    *data = ptr;
    *bytes = length;
    *type = napi_uint8_array;
    return true;
  }
  return fail(c, "%s must be a TypedArray or DataView", name);
}

/*
 * The operand obj[key] (a view) at byte offset obj[key + "Offset"] (default 0) holding `count`
 * elements of `es` bytes: a checked pointer, or NULL (absent and optional, or an error thrown).
 */
static void *view_field(call_t *c, napi_value obj, const char *key, size_t es, int64_t count, bool optional) {
  uint8_t *data = NULL;
  size_t bytes = 0;
  napi_typedarray_type type;
  int64_t off = 0;
  char okey[64];
  napi_value v = field(c, obj, key);
  if (c->failed) return NULL;
  if (!v) {
    if (!optional) fail(c, "%s is required", key);
    return NULL;
  }
  if (!view_bytes(c, v, key, &data, &bytes, &type)) return NULL;
  snprintf(okey, sizeof okey, "%sOffset", key);
  if (!int_field(c, obj, okey, 0, INT64_MAX / 2, true, 0, &off)) return NULL;
  uint8_t *p = data + off;
  if (((uintptr_t)p) % es != 0) return fail(c, "%s at byte offset %lld is not %zu-byte aligned", key, (long long)off, es), NULL;
  if (count < 0) count = 0;
  __int128 end = (__int128)off + (__int128)count * (__int128)es;
  if (off > (int64_t)bytes || end > (__int128)bytes)
    return fail(c, "%s (%lld elements of %zu bytes at byte offset %lld) is outside its %zu-byte array", key,
                (long long)count, es, (long long)off, bytes), NULL;
  return p;
}

static size_t type_size(int type) { return type == MKA_F32 ? 4 : 2; }

/* Product of non-negative dimensions; fails above 2^53 elements. */
static bool dims(call_t *c, int64_t *out, int n, ...) {
  va_list ap;
  va_start(ap, n);
  __int128 p = 1;
  for (int i = 0; i < n; i++) {
    p *= va_arg(ap, int64_t);
    if (p > ((__int128)1 << 53)) {
      va_end(ap);
      return fail(c, "operand sizes too large");
    }
  }
  va_end(ap);
  *out = (int64_t)p;
  return true;
}

#define DIM_MAX ((int64_t)1 << 40)

/*
 * A weight descriptor {format, rows, cols, data, scales, mins, group, perToken, floatProducts} (rows = outputs n,
 * cols = inputs k) into w, its sizes checked against the format. `name` prefixes messages.
 */
static bool weight_desc(call_t *c, napi_value obj, const char *name, mka_weight *w) {
  int64_t format = 0, rows = 0, cols = 0, group = 0;
  bool per_token = false, float_products = false;
  napi_valuetype t;
  if (c->failed) return false;
  if (!obj || napi_typeof(c->env, obj, &t) != napi_ok || t != napi_object) return fail(c, "%s must be a weight descriptor object", name);
  c->where = name;
  if (!int_field(c, obj, "format", 0, MKA_Q4, false, 0, &format) || !int_field(c, obj, "rows", 0, DIM_MAX, false, 0, &rows) ||
      !int_field(c, obj, "cols", 0, DIM_MAX, false, 0, &cols))
    return false;
  memset(w, 0, sizeof *w);
  w->format = (int)format;
  w->n = rows;
  w->k = cols;
  int64_t count = 0;
  size_t es = 4;
  if (format == MKA_F32 || format == MKA_BF16 || format == MKA_F16) {
    if (!dims(c, &count, 2, rows, cols)) return false;
    es = type_size((int)format);
  } else if (format == MKA_BF16P) {
    if (!dims(c, &count, 3, (rows + BF16P_NR - 1) / BF16P_NR, (int64_t)bf16p_pairs(cols), (int64_t)BF16P_NR)) return false;
  } else {
    /* contract 1: rows of ceil(cols/32) blocks (zero past cols), ceil(cols/group) groups */
    if (!int_field(c, obj, "group", 1, DIM_MAX, false, 0, &group)) return false;
    if (group % 32 && group < cols) return fail(c, "group = %lld must be a multiple of 32 or the whole row (cols = %lld)", (long long)group, (long long)cols);
    if (!bool_field(c, obj, "perToken", &per_token) || !bool_field(c, obj, "floatProducts", &float_products)) return false;
    if (per_token && float_products) return fail(c, "perToken (int8 activations) and floatProducts exclude each other");
    const int64_t blocks = (cols + 31) / 32;
    if (!dims(c, &count, 2, rows, blocks * (format == MKA_Q8 ? 32 : 16))) return false;
    es = 1;
    int64_t ns = 0;
    if (!dims(c, &ns, 2, rows, (cols + group - 1) / group)) return false;
    w->group = group;
    w->act_per_token = per_token;
    w->float_products = float_products;
    w->scales = view_field(c, obj, "scales", 4, ns, false);
    w->mins = view_field(c, obj, "mins", 4, ns, true);
  }
  w->data = view_field(c, obj, "data", es, count, false);
  if (c->failed) return false;
  c->where = NULL;
  return true;
}

static napi_value js_matmul(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "matmul", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t b_type = 0, m = 0, n = 0, k = 0, batch = 0, bias_len = 0, act = 0;
  bool ta, tb, acc;
  if (!int_field(&c, d, "bType", 0, MKA_F16, true, MKA_F32, &b_type) || !int_field(&c, d, "m", 0, DIM_MAX, false, 0, &m) ||
      !int_field(&c, d, "n", 0, DIM_MAX, false, 0, &n) || !int_field(&c, d, "k", 0, DIM_MAX, false, 0, &k) ||
      !bool_field(&c, d, "transA", &ta) || !bool_field(&c, d, "transB", &tb) ||
      !int_field(&c, d, "batch", 0, DIM_MAX, true, 1, &batch) || !int_field(&c, d, "activation", 0, 2, true, 0, &act) ||
      !bool_field(&c, d, "accumulate", &acc))
    return NULL;
  const int32_t *idx = NULL;
  int64_t max_a = batch - 1, max_b = batch - 1;
  napi_value iv = field(&c, d, "idx");
  if (c.failed) return NULL;
  if (iv) {
    uint8_t *data;
    size_t bytes;
    napi_typedarray_type type;
    if (!view_bytes(&c, iv, "idx", &data, &bytes, &type)) return NULL;
    if (type != napi_int32_array || bytes < (size_t)(8 * batch))
      return fail(&c, "idx must be an Int32Array of 2*batch entries, got fewer: %.0f", (double)(bytes / 4)), NULL;
    idx = (const int32_t *)data;
    max_a = max_b = -1;
    for (int64_t i = 0; i < batch; i++) {
      if (idx[2 * i] < 0 || idx[2 * i + 1] < 0) return fail(&c, "negative batch index at idx entry %.0f", (double)(2 * i)), NULL;
      if (idx[2 * i] > max_a) max_a = idx[2 * i];
      if (idx[2 * i + 1] > max_b) max_b = idx[2 * i + 1];
    }
  }
  int64_t na = 0, nb = 0, nc = 0;
  if (!dims(&c, &na, 3, max_a + 1, m, k) || !dims(&c, &nb, 3, max_b + 1, k, n) || !dims(&c, &nc, 3, batch, m, n)) return NULL;
  const float *a = view_field(&c, d, "a", 4, na, false);
  const void *b = view_field(&c, d, "b", type_size((int)b_type), nb, false);
  float *out = view_field(&c, d, "c", 4, nc, false);
  if (c.failed) return NULL;
  const float *bias = NULL;
  if (field(&c, d, "bias")) {
    if (!int_field(&c, d, "biasLength", 1, DIM_MAX, true, n, &bias_len)) return NULL;
    if (bias_len != 1 && bias_len != n) return fail(&c, "biasLength must be 1 or n, got %.0f", (double)bias_len), NULL;
    bias = view_field(&c, d, "bias", 4, bias_len, false);
    if (!bias) return NULL;
  }
  gemm_args g = {a, b, out, (int)b_type, m, n, k, batch, ta, tb, idx, bias, bias_len, (int)act, acc};
  if (gemm(&g) != 0) napi_throw_error(env, NULL, "mka_native.matmul: out of memory");
  return NULL;
}

/* linear({x, m, weight, bias?, y, accumulate?}): y [m][rows] (=, or +=) x [m][cols] · Wᵀ + bias. */
static napi_value js_linear(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "linear", 1, true)) return NULL;
  napi_value d = c.argv[0];
  mka_weight w;
  int64_t m = 0, nx = 0, ny = 0;
  bool acc;
  if (!int_field(&c, d, "m", 0, DIM_MAX, false, 0, &m) || !weight_desc(&c, field(&c, d, "weight"), "weight", &w) ||
      !bool_field(&c, d, "accumulate", &acc) || !dims(&c, &nx, 2, m, (int64_t)w.k) || !dims(&c, &ny, 2, m, (int64_t)w.n))
    return NULL;
  const float *x = view_field(&c, d, "x", 4, nx, false);
  float *y = view_field(&c, d, "y", 4, ny, false);
  const float *bias = view_field(&c, d, "bias", 4, w.n, true);
  if (c.failed) return NULL;
  linear_args l = {x, m, &w, bias, y, acc};
  if (linear(&l) != 0) napi_throw_error(env, NULL, "mka_native.linear: out of memory");
  return NULL;
}

/* packBf16({src, type, rows, cols, out}): W [rows][cols] of type into BF16P panels. */
static napi_value js_pack_bf16(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "packBf16", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t type = 0, rows = 0, cols = 0, n = 0, np = 0;
  if (!int_field(&c, d, "type", 0, MKA_F16, false, 0, &type) || !int_field(&c, d, "rows", 0, DIM_MAX, false, 0, &rows) ||
      !int_field(&c, d, "cols", 0, DIM_MAX, false, 0, &cols) || !dims(&c, &n, 2, rows, cols) ||
      !dims(&c, &np, 3, (rows + BF16P_NR - 1) / BF16P_NR, (int64_t)bf16p_pairs(cols), (int64_t)BF16P_NR))
    return NULL;
  const void *src = view_field(&c, d, "src", type_size((int)type), n, false);
  uint32_t *out = view_field(&c, d, "out", 4, np, false);
  if (c.failed) return NULL;
  bf16p_pack(out, src, (int)type, rows, cols);
  return NULL;
}

static napi_value js_attention(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "attention", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t B = 0, T = 0, S = 0, nH = 0, nKV = 0, hd = 0, kvB = 0, window = 0;
  double scale = 0;
  bool bf16 = false;
  if (!bool_field(&c, d, "bf16", &bf16) || !int_field(&c, d, "B", 0, DIM_MAX, false, 0, &B) || !int_field(&c, d, "T", 0, DIM_MAX, false, 0, &T) ||
      !int_field(&c, d, "S", 0, DIM_MAX, false, 0, &S) || !int_field(&c, d, "nH", 1, DIM_MAX, false, 0, &nH) ||
      !int_field(&c, d, "nKV", 1, DIM_MAX, false, 0, &nKV) || !int_field(&c, d, "hd", 1, 1 << 16, false, 0, &hd) ||
      !int_field(&c, d, "kvB", 1, DIM_MAX, true, 1, &kvB) || !int_field(&c, d, "window", 0, DIM_MAX, true, 0, &window) ||
      !num_field(&c, d, "scale", &scale))
    return NULL;
  if (T > S) return fail(&c, "T must be <= S (queries are the last T positions), T = %.0f", (double)T), NULL;
  if (nH % nKV != 0) return fail(&c, "nH must be a multiple of nKV, nKV = %.0f", (double)nKV), NULL;
  if (kvB != 1 && kvB != B) return fail(&c, "kvB must be 1 or B, got %.0f", (double)kvB), NULL;
  int64_t nq = 0, nkv = 0;
  if (!dims(&c, &nq, 4, B, T, nH, hd) || !dims(&c, &nkv, 4, kvB, nKV, S, hd)) return NULL;
  const float *q = view_field(&c, d, "q", 4, nq, false);
  const float *k = view_field(&c, d, "k", 4, nkv, false);
  const float *v = view_field(&c, d, "v", 4, nkv, false);
  float *out = view_field(&c, d, "out", 4, nq, false);
  if (c.failed) return NULL;
  if (B > 0 && T > 0) attention(q, k, v, out, B, T, S, nH, nKV, hd, kvB, window, (float)scale, bf16);
  return NULL;
}

static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "rmsnorm", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t w_type = 0, rows = 0, n = 0, nx = 0;
  double eps = 0;
  if (!int_field(&c, d, "wType", 0, MKA_F16, true, MKA_F32, &w_type) || !int_field(&c, d, "rows", 0, DIM_MAX, false, 0, &rows) ||
      !int_field(&c, d, "n", 0, DIM_MAX, false, 0, &n) || !num_field(&c, d, "eps", &eps) || !dims(&c, &nx, 2, rows, n))
    return NULL;
  const float *x = view_field(&c, d, "x", 4, nx, false);
  const void *w = view_field(&c, d, "w", type_size((int)w_type), n, false);
  float *out = view_field(&c, d, "out", 4, nx, false);
  if (c.failed) return NULL;
  rmsnorm(x, w, (int)w_type, out, rows, n, (float)eps);
  return NULL;
}

static napi_value js_rope(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "rope", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t B = 0, T = 0, heads = 0, hd = 0, nx = 0, nt = 0;
  if (!int_field(&c, d, "B", 0, DIM_MAX, false, 0, &B) || !int_field(&c, d, "T", 0, DIM_MAX, false, 0, &T) ||
      !int_field(&c, d, "heads", 0, DIM_MAX, false, 0, &heads) || !int_field(&c, d, "hd", 0, 1 << 16, false, 0, &hd))
    return NULL;
  if (hd % 2) return fail(&c, "hd must be even, got %.0f", (double)hd), NULL;
  if (!dims(&c, &nx, 4, B, T, heads, hd) || !dims(&c, &nt, 2, T, hd)) return NULL;
  float *x = view_field(&c, d, "x", 4, nx, false);
  const float *cs = view_field(&c, d, "cos", 4, nt, false);
  const float *sn = view_field(&c, d, "sin", 4, nt, false);
  if (c.failed) return NULL;
  rope(x, cs, sn, B, T, heads, hd);
  return NULL;
}

static napi_value js_silu_mul(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "siluMul", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t n = 0;
  if (!int_field(&c, d, "n", 0, DIM_MAX, false, 0, &n)) return NULL;
  const float *g = view_field(&c, d, "gate", 4, n, false);
  const float *u = view_field(&c, d, "up", 4, n, false);
  float *out = view_field(&c, d, "out", 4, n, false);
  if (c.failed) return NULL;
  silu_mul(g, u, out, n);
  return NULL;
}

/* gatherRows({table: weight descriptor (any format), ids, out}): out[r] = float32(row ids[r]). */
static napi_value js_gather_rows(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "gatherRows", 1, true)) return NULL;
  napi_value d = c.argv[0];
  mka_weight t;
  int64_t nout = 0;
  if (!weight_desc(&c, field(&c, d, "table"), "table", &t)) return NULL;
  uint8_t *data = NULL;
  size_t bytes = 0;
  napi_typedarray_type type = napi_uint8_array;
  napi_value iv = field(&c, d, "ids");
  if (c.failed) return NULL;
  if (!iv) return fail(&c, "ids is required"), NULL;
  if (!view_bytes(&c, iv, "ids", &data, &bytes, &type)) return NULL;
  if (type != napi_int32_array) return fail(&c, "ids must be an Int32Array"), NULL;
  const int32_t *ids = (const int32_t *)data;
  const int64_t count = (int64_t)(bytes / 4);
  for (int64_t i = 0; i < count; i++)
    if (ids[i] < 0 || ids[i] >= t.n) {
      return fail(&c, "ids[%lld] = %d is outside the table's %lld rows", (long long)i, ids[i], (long long)t.n), NULL;
    }
  if (!dims(&c, &nout, 2, count, (int64_t)t.k)) return NULL;
  float *out = view_field(&c, d, "out", 4, nout, false);
  if (c.failed) return NULL;
  gather_rows(&t, ids, count, out);
  return NULL;
}

static napi_value js_to_float32(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "toFloat32", 1, true)) return NULL;
  napi_value d = c.argv[0];
  int64_t type = 0, n = 0;
  if (!int_field(&c, d, "type", 0, MKA_F16, false, 0, &type) || !int_field(&c, d, "n", 0, DIM_MAX, false, 0, &n)) return NULL;
  const void *src = view_field(&c, d, "src", type_size((int)type), n, false);
  float *out = view_field(&c, d, "out", 4, n, false);
  if (c.failed) return NULL;
  to_float32(src, (int)type, out, n);
  return NULL;
}

/*
 * decoderLayer({x, h, norm1, norm2, weights: [q, k, v, o, gate, up, down] weight descriptors, biases: 7 views or
 * nulls, pastK?, pastV?, cos, sin, kOut?, vOut?, B, T, H, nH, nKV, hd, F, S0, kvB, window, eps, scale}).
 */
static napi_value js_decoder_layer(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "decoderLayer", 1, true)) return NULL;
  napi_value d = c.argv[0];
  layer_args a = {0};
  int64_t v[10];
  static const char *const names[10] = {"B", "T", "H", "nH", "nKV", "hd", "F", "S0", "kvB", "window"};
  for (int i = 0; i < 10; i++)
    if (!int_field(&c, d, names[i], 0, DIM_MAX, i >= 7, i == 8 ? 1 : 0, &v[i])) return NULL;
  double eps = 0, scale = 0;
  bool bf16 = false;
  if (!num_field(&c, d, "eps", &eps) || !num_field(&c, d, "scale", &scale) || !bool_field(&c, d, "bf16Attention", &bf16)) return NULL;
  a.bf16_attention = bf16;
  a.B = v[0], a.T = v[1], a.H = v[2], a.nH = v[3], a.nKV = v[4], a.hd = v[5], a.F = v[6], a.S0 = v[7], a.kvB = v[8], a.window = v[9];
  a.eps = (float)eps, a.scale = (float)scale;
  if (a.nH < 1 || a.nKV < 1 || a.nH % a.nKV) return fail(&c, "nH must be a positive multiple of nKV"), NULL;
  if (a.hd < 2 || a.hd % 2 || a.hd > 65536) return fail(&c, "hd must be even, from 2 to 65536"), NULL;
  if (a.kvB != 1 && a.kvB != a.B) return fail(&c, "kvB must be 1 or B"), NULL;
  const int64_t rows = (int64_t)a.B * a.T, qw = a.nH * a.hd, kw = a.nKV * a.hd, S = a.S0 + a.T;
  if (a.H > DIM_MAX / (a.F + qw + 1) || rows > DIM_MAX / (a.H + qw + a.F + 1) || (int64_t)a.B * a.nKV * S * a.hd > DIM_MAX)
    return fail(&c, "operand sizes too large"), NULL;
  a.x = view_field(&c, d, "x", 4, rows * a.H, false);
  a.h = view_field(&c, d, "h", 4, rows * a.H, false);
  a.norm1 = view_field(&c, d, "norm1", 4, a.H, false);
  a.norm2 = view_field(&c, d, "norm2", 4, a.H, false);
  napi_value ws = field(&c, d, "weights"), bs = field(&c, d, "biases");
  bool is_arr = false;
  uint32_t nw = 0, nb = 0;
  if (c.failed) return NULL;
  if (!ws || napi_is_array(env, ws, &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, ws, &nw) != napi_ok || nw != DL_NPROJ)
    return fail(&c, "weights must be an array of 7 weight descriptors"), NULL;
  if (bs && (napi_is_array(env, bs, &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, bs, &nb) != napi_ok || nb != DL_NPROJ))
    return fail(&c, "biases must be an array of 7 views or nulls"), NULL;
  const int64_t outs[DL_NPROJ] = {qw, kw, kw, a.H, a.F, a.F, a.H}, ins[DL_NPROJ] = {a.H, a.H, a.H, qw, a.H, a.H, a.F};
  static const char *const wn[DL_NPROJ] = {"weights[0] (q)", "weights[1] (k)", "weights[2] (v)", "weights[3] (o)",
                                           "weights[4] (gate)", "weights[5] (up)", "weights[6] (down)"};
  for (int i = 0; i < DL_NPROJ; i++) {
    napi_value wv;
    napi_get_element(env, ws, (uint32_t)i, &wv);
    if (!weight_desc(&c, wv, wn[i], &a.w[i])) return NULL;
    if (a.w[i].n != outs[i] || a.w[i].k != ins[i])
      return fail(&c, "%s is [%ld, %ld], the layer needs [%lld, %lld]", wn[i], a.w[i].n, a.w[i].k, (long long)outs[i], (long long)ins[i]), NULL;
    if (bs) {
      napi_value bv, holder;
      napi_get_element(env, bs, (uint32_t)i, &bv);
      napi_create_object(env, &holder);
      napi_set_named_property(env, holder, "bias", bv);
      a.bias[i] = view_field(&c, holder, "bias", 4, outs[i], true);
    }
  }
  const int64_t past = (int64_t)a.kvB * a.nKV * a.S0 * a.hd;
  a.past_k = view_field(&c, d, "pastK", 4, past, a.S0 == 0);
  a.past_v = view_field(&c, d, "pastV", 4, past, a.S0 == 0);
  a.cos = view_field(&c, d, "cos", 4, a.T * a.hd, false);
  a.sin = view_field(&c, d, "sin", 4, a.T * a.hd, false);
  a.k_out = view_field(&c, d, "kOut", 4, (int64_t)a.B * a.nKV * S * a.hd, true);
  a.v_out = view_field(&c, d, "vOut", 4, (int64_t)a.B * a.nKV * S * a.hd, a.k_out == NULL);
  if (c.failed) return NULL;
  if (!a.k_out) a.v_out = NULL;
  if (rows > 0 && decoder_layer(&a) != 0) napi_throw_error(env, NULL, "mka_native.decoderLayer: out of memory");
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "setThreads", 1, false)) return NULL;
  double d;
  const int most = 4 * cpu_get()->procs;
  if (napi_get_value_double(env, c.argv[0], &d) != napi_ok || d != floor(d) || d < 1 || d > most)
    return fail(&c, "threads = %g is not an integer from 1 to %d", d, most), NULL;
  if (pool_set_threads((int)d) != 0) napi_throw_error(env, NULL, "mka_native.setThreads: could not start the threads");
  return NULL;
}

/* Bench-only (not part of the kernel API): _openblasSgemm({path, threads, a, b, c, m, n, k, transB}) -> ok. */
static napi_value js_openblas_sgemm(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "_openblasSgemm", 1, true)) return NULL;
  napi_value d = c.argv[0];
  char path[512];
  size_t len = 0;
  int64_t threads = 0, m = 0, n = 0, k = 0;
  bool tb = false;
  napi_value pv = field(&c, d, "path");
  if (!pv || napi_get_value_string_utf8(env, pv, path, sizeof path, &len) != napi_ok) return fail(&c, "path must be a string"), NULL;
  if (!int_field(&c, d, "threads", 1, 1024, false, 0, &threads) || !int_field(&c, d, "m", 1, 1 << 20, false, 0, &m) ||
      !int_field(&c, d, "n", 1, 1 << 20, false, 0, &n) || !int_field(&c, d, "k", 1, 1 << 20, false, 0, &k) || !bool_field(&c, d, "transB", &tb))
    return NULL;
  const float *a = view_field(&c, d, "a", 4, m * k, false), *b = view_field(&c, d, "b", 4, k * n, false);
  float *out = view_field(&c, d, "c", 4, m * n, false);
  if (c.failed) return NULL;
  napi_value ok;
  napi_get_boolean(env, openblas_sgemm(path, (int)threads, a, b, out, (int)m, (int)n, (int)k, tb) == 0, &ok);
  return ok;
}

static bool set_prop(napi_env env, napi_value obj, const char *key, napi_value v);

/* Bench-only: _peak(kind, seconds) -> {wall, perCpuSecond} GFLOP/s (GOP/s for int8) of a register-only loop on every pool thread. */
static napi_value js_peak(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "_peak", 2, false)) return NULL;
  double kind = 0, secs = 0;
  if (napi_get_value_double(env, c.argv[0], &kind) != napi_ok || napi_get_value_double(env, c.argv[1], &secs) != napi_ok)
    return fail(&c, "expects (kind, seconds)"), NULL;
  napi_value out, wall, cpu;
  double per_cpu = 0;
  const double w = peak_gflops((int)kind, secs, &per_cpu);
  napi_create_object(env, &out);
  napi_create_double(env, w, &wall);
  napi_create_double(env, per_cpu, &cpu);
  set_prop(env, out, "wall", wall);
  set_prop(env, out, "perCpuSecond", cpu);
  return out;
}

static bool set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  return napi_set_named_property(env, obj, key, v) == napi_ok;
}

static bool set_str(napi_env env, napi_value obj, const char *key, const char *s) {
  napi_value v;
  return napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) == napi_ok && set_prop(env, obj, key, v);
}

static bool set_bool(napi_env env, napi_value obj, const char *key, bool b) {
  napi_value v;
  return napi_get_boolean(env, b, &v) == napi_ok && set_prop(env, obj, key, v);
}

static bool set_int(napi_env env, napi_value obj, const char *key, int i) {
  napi_value v;
  return napi_create_int32(env, i, &v) == napi_ok && set_prop(env, obj, key, v);
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  const mka_cpu *cpu = cpu_get();
  napi_value obj, has;
  static const char *const levels[] = {"generic", "avx2", "avx512", "vnni", "bf16", "amx"};
  if (napi_create_object(env, &obj) != napi_ok || napi_create_object(env, &has) != napi_ok ||
      !set_str(env, obj, "isa", isa_name(cpu->isa)) || !set_str(env, obj, "level", levels[cpu->level]) ||
      !set_int(env, obj, "threads", pool_threads()) || !set_int(env, obj, "procs", cpu->procs) ||
      !set_str(env, obj, "cpu", cpu->cpu) || !set_str(env, obj, "bf16Kernel", bf16_kernel_name()) ||
      !set_str(env, obj, "int8Kernel", int8_kernel_name()) || !set_str(env, obj, "amxNote", cpu->amx_note) ||
      !set_bool(env, has, "avx512", cpu->best_isa == ISA_AVX512) || !set_bool(env, has, "avx2", cpu->best_isa >= ISA_AVX2) ||
      !set_bool(env, has, "vnni", cpu->has_vnni) || !set_bool(env, has, "bf16", cpu->has_bf16) || !set_bool(env, has, "amx", cpu->has_amx) ||
      !set_prop(env, obj, "cpuHas", has)) {
    napi_throw_error(env, NULL, "mka_native.info: N-API call failed");
    return NULL;
  }
  return obj;
}


/* The C heap's state (glibc's mallinfo2: bytes in use, free but kept in arenas, mapped for large
   blocks), after returning its free pages to the system when `trim` is true (malloc_trim). Elsewhere
   every field is -1 and trim does nothing. */
static napi_value js_malloc(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  bool trim = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc >= 1) napi_get_value_bool(env, argv[0], &trim);
  double arena = -1, inuse = -1, free_ = -1, mapped = -1, releasable = -1;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  if (trim) malloc_trim(0);
  struct mallinfo2 m = mallinfo2();
  arena = (double)m.arena;
  inuse = (double)m.uordblks;
  free_ = (double)m.fordblks;
  mapped = (double)m.hblkhd;
  releasable = (double)m.keepcost;
#endif
  if (napi_create_object(env, &out) != napi_ok) return NULL;
  const char *keys[] = {"arena", "inUse", "free", "mapped", "topReleasable"};
  double vals[] = {arena, inuse, free_, mapped, releasable};
  for (int i = 0; i < 5; i++) {
    if (napi_create_double(env, vals[i], &v) != napi_ok || !set_prop(env, out, keys[i], v)) return NULL;
  }
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  if (cpu_init(getenv("MKA_ISA")) != 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "MKA_ISA=%s is not one of generic, avx2, avx512, vnni, bf16, amx, amx-emulated", getenv("MKA_ISA"));
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  if (pool_threads() == 1 && cpu_get()->procs > 1) pool_set_threads(cpu_get()->procs);
#if defined(__GLIBC__)
  /* Blocks of 1 MiB and more (tensors' arrays, product tiles) are mapped on their own, so freeing one
     returns its pages at once. glibc raises its threshold to each freed mapped block's size (up to 32
     MiB), after which such blocks come from its heaps, which keep what is freed: 0.1-0.3 GB more RSS
     beside the live arrays of a Llama-3-8B layer's GPTQ (docs/quantization.md). A threshold set in the
     environment (MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES) is left as it is. */
  if (!getenv("MALLOC_MMAP_THRESHOLD_") && !getenv("GLIBC_TUNABLES")) mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  napi_property_descriptor props[] = {
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"matmul", NULL, js_matmul, NULL, NULL, NULL, napi_default, NULL},
      {"linear", NULL, js_linear, NULL, NULL, NULL, napi_default, NULL},
      {"packBf16", NULL, js_pack_bf16, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
      {"rmsnorm", NULL, js_rmsnorm, NULL, NULL, NULL, napi_default, NULL},
      {"rope", NULL, js_rope, NULL, NULL, NULL, napi_default, NULL},
      {"siluMul", NULL, js_silu_mul, NULL, NULL, NULL, napi_default, NULL},
      {"gatherRows", NULL, js_gather_rows, NULL, NULL, NULL, napi_default, NULL},
      {"toFloat32", NULL, js_to_float32, NULL, NULL, NULL, napi_default, NULL},
      {"decoderLayer", NULL, js_decoder_layer, NULL, NULL, NULL, napi_default, NULL},
      {"_openblasSgemm", NULL, js_openblas_sgemm, NULL, NULL, NULL, napi_default, NULL},
      {"_peak", NULL, js_peak, NULL, NULL, NULL, napi_default, NULL},
      {"_malloc", NULL, js_malloc, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
    napi_throw_error(env, NULL, "mka_native: N-API call failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
