/*
 * mka_native: Node-API glue. Every operand arrives as (view, byteOffset): the pointer is the view's
 * own data (its byteOffset included) plus byteOffset, checked against the view's byte length and
 * the element alignment; a violation throws a RangeError naming the function and operand.
 * See native-contract.md / src/runtime/native-addon.ts for the API.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include "mka.h"
#include "blas_probe.h"

#define MAX_ARGS 20

typedef struct {
  napi_env env;
  const char *fn;
  napi_value argv[MAX_ARGS];
  size_t argc;
  bool failed;
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
  snprintf(msg, sizeof msg, "mka_native.%s: %s", c->fn, detail);
  napi_throw_range_error(c->env, NULL, msg);
  c->failed = true;
  return false;
}

static bool begin(call_t *c, napi_env env, napi_callback_info info, const char *fn, size_t want) {
  c->env = env;
  c->fn = fn;
  c->failed = false;
  c->argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) return fail(c, "bad call");
  if (c->argc < want) {
    return fail(c, "expects %zu arguments, got %zu", want, c->argc);
  }
  return true;
}

/* An integer argument in [lo, hi]. */
static bool int_arg(call_t *c, int i, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  double d;
  if (c->failed) return false;
  if (napi_get_value_double(c->env, c->argv[i], &d) != napi_ok) return fail(c, "%s must be a number", name);
  if (!(d == floor(d)) || d < (double)lo || d > (double)hi) return fail(c, "%s = %g is not an integer from %lld to %lld", name, d, (long long)lo, (long long)hi);
  *out = (int64_t)d;
  return true;
}

static bool num_arg(call_t *c, int i, const char *name, double *out) {
  if (c->failed) return false;
  if (napi_get_value_double(c->env, c->argv[i], out) != napi_ok || !isfinite(*out)) return fail(c, "%s must be a finite number", name);
  return true;
}

static bool bool_arg(call_t *c, int i, const char *name, bool *out) {
  napi_valuetype t;
  if (c->failed) return false;
  if (napi_typeof(c->env, c->argv[i], &t) != napi_ok) return fail(c, "%s: bad value", name);
  if (t == napi_boolean) return napi_get_value_bool(c->env, c->argv[i], out) == napi_ok;
  if (t == napi_number) {
    double d;
    napi_get_value_double(c->env, c->argv[i], &d);
    *out = d != 0;
    return true;
  }
  return fail(c, "%s must be a boolean", name);
}

static bool is_null(call_t *c, int i) {
  napi_valuetype t;
  if ((size_t)i >= c->argc) return true;
  return napi_typeof(c->env, c->argv[i], &t) == napi_ok && (t == napi_null || t == napi_undefined);
}

/* The bytes of an ArrayBufferView; *type is its typed-array type (napi_uint8_array for a DataView). */
static bool view_bytes(call_t *c, int i, const char *name, uint8_t **data, size_t *bytes, napi_typedarray_type *type) {
  bool yes = false;
  if (c->failed) return false;
  if (napi_is_typedarray(c->env, c->argv[i], &yes) == napi_ok && yes) {
    size_t length, offset;
    void *ptr;
    napi_value buf;
    napi_get_typedarray_info(c->env, c->argv[i], type, &length, &ptr, &buf, &offset);
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
  if (napi_is_dataview(c->env, c->argv[i], &yes) == napi_ok && yes) {
    size_t length, offset;
    void *ptr;
    napi_value buf;
    napi_get_dataview_info(c->env, c->argv[i], &length, &ptr, &buf, &offset);
    *data = ptr;
    *bytes = length;
    *type = napi_uint8_array;
    return true;
  }
  return fail(c, "%s must be a TypedArray or DataView", name);
}

/*
 * Operand at argv[i] (view) and argv[i+1] (byte offset) holding `count` elements of `es` bytes:
 * a checked pointer. count < 0 means "unknown, only check the offset".
 */
static void *operand(call_t *c, int i, const char *name, size_t es, int64_t count) {
  uint8_t *data = NULL;
  size_t bytes = 0;
  napi_typedarray_type type;
  int64_t off = 0;
  char what[96];
  if (!view_bytes(c, i, name, &data, &bytes, &type)) return NULL;
  snprintf(what, sizeof what, "%s's byte offset", name);
  if (!int_arg(c, i + 1, what, 0, INT64_MAX / 2, &off)) return NULL;
  uint8_t *p = data + off;
  if (((uintptr_t)p) % es != 0) return fail(c, "%s at byte offset %lld is not %zu-byte aligned", name, (long long)off, es), NULL;
  if (count < 0) count = 0;
  __int128 end = (__int128)off + (__int128)count * (__int128)es;
  if (off > (int64_t)bytes || end > (__int128)bytes)
    return fail(c, "%s (%lld elements of %zu bytes at byte offset %lld) is outside its %zu-byte array", name,
                (long long)count, es, (long long)off, bytes), NULL;
  return p;
}

static size_t type_size(int type) { return type == MKA_F32 ? 4 : 2; }

/* Product of non-negative dimensions; fails above 2^53 elements. */
static bool dims(call_t *c, int64_t *out, int n, ...) {
  __builtin_va_list ap;
  __builtin_va_start(ap, n);
  __int128 p = 1;
  for (int i = 0; i < n; i++) {
    p *= __builtin_va_arg(ap, int64_t);
    if (p > ((__int128)1 << 53)) {
      __builtin_va_end(ap);
      return fail(c, "operand sizes too large");
    }
  }
  __builtin_va_end(ap);
  *out = (int64_t)p;
  return true;
}

#define DIM_MAX ((int64_t)1 << 40)

static napi_value js_matmul(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "matmul", 19)) return NULL;
  int64_t b_type = 0, m = 0, n = 0, k = 0, batch = 0, bias_off = 0, bias_len = 0, act = 0;
  bool ta, tb, acc;
  if (!int_arg(&c, 4, "bType", 0, 2, &b_type) || !int_arg(&c, 7, "m", 0, DIM_MAX, &m) ||
      !int_arg(&c, 8, "n", 0, DIM_MAX, &n) || !int_arg(&c, 9, "k", 0, DIM_MAX, &k) || !bool_arg(&c, 10, "transA", &ta) ||
      !bool_arg(&c, 11, "transB", &tb) || !int_arg(&c, 12, "batch", 0, DIM_MAX, &batch) ||
      !int_arg(&c, 17, "act", 0, 2, &act) || !bool_arg(&c, 18, "accumulate", &acc))
    return NULL;
  const int32_t *idx = NULL;
  int64_t max_a = batch - 1, max_b = batch - 1;
  if (!is_null(&c, 13)) {
    uint8_t *data;
    size_t bytes;
    napi_typedarray_type type;
    if (!view_bytes(&c, 13, "idx", &data, &bytes, &type)) return NULL;
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
  const float *a = operand(&c, 0, "A", 4, na);
  const void *b = operand(&c, 2, "B", type_size((int)b_type), nb);
  float *out = operand(&c, 5, "C", 4, nc);
  if (c.failed) return NULL;
  const float *bias = NULL;
  if (!is_null(&c, 14)) {
    if (!int_arg(&c, 16, "biasLen", 1, DIM_MAX, &bias_len)) return NULL;
    if (bias_len != 1 && bias_len != n) return fail(&c, "biasLen must be 1 or n, got %.0f", (double)bias_len), NULL;
    bias = operand(&c, 14, "bias", 4, bias_len);
    if (!bias) return NULL;
  } else {
    bias_len = 0;
  }
  (void)bias_off;
  gemm_args g = {a, b, out, (int)b_type, m, n, k, batch, ta, tb, idx, bias, bias_len, (int)act, acc, cpu_get()->bf16_dot_on};
  if (gemm(&g) != 0) napi_throw_error(env, NULL, "mka_native.matmul: out of memory");
  return NULL;
}

static napi_value js_attention(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "attention", 17)) return NULL;
  int64_t B = 0, T = 0, S = 0, nH = 0, nKV = 0, hd = 0, kvB = 0, window = 0;
  double scale = 0;
  if (!int_arg(&c, 8, "B", 0, DIM_MAX, &B) || !int_arg(&c, 9, "T", 0, DIM_MAX, &T) || !int_arg(&c, 10, "S", 0, DIM_MAX, &S) ||
      !int_arg(&c, 11, "nH", 1, DIM_MAX, &nH) || !int_arg(&c, 12, "nKV", 1, DIM_MAX, &nKV) ||
      !int_arg(&c, 13, "hd", 1, 1 << 16, &hd) || !int_arg(&c, 14, "kvB", 1, DIM_MAX, &kvB) ||
      !int_arg(&c, 15, "window", 0, DIM_MAX, &window) || !num_arg(&c, 16, "scale", &scale))
    return NULL;
  if (T > S) return fail(&c, "T must be <= S (queries are the last T positions), T = %.0f", (double)T), NULL;
  if (nH % nKV != 0) return fail(&c, "nH must be a multiple of nKV, nKV = %.0f", (double)nKV), NULL;
  if (kvB != 1 && kvB != B) return fail(&c, "kvB must be 1 or B, got %.0f", (double)kvB), NULL;
  int64_t nq = 0, nkv = 0;
  if (!dims(&c, &nq, 4, B, T, nH, hd) || !dims(&c, &nkv, 4, kvB, nKV, S, hd)) return NULL;
  const float *q = operand(&c, 0, "q", 4, nq);
  const float *k = operand(&c, 2, "k", 4, nkv);
  const float *v = operand(&c, 4, "v", 4, nkv);
  float *out = operand(&c, 6, "out", 4, nq);
  if (c.failed) return NULL;
  if (B > 0 && T > 0) attention(q, k, v, out, B, T, S, nH, nKV, hd, kvB, window, (float)scale);
  return NULL;
}

static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "rmsnorm", 10)) return NULL;
  int64_t w_type = 0, rows = 0, n = 0, nx = 0;
  double eps = 0;
  if (!int_arg(&c, 4, "wType", 0, 2, &w_type) || !int_arg(&c, 7, "rows", 0, DIM_MAX, &rows) ||
      !int_arg(&c, 8, "n", 0, DIM_MAX, &n) || !num_arg(&c, 9, "eps", &eps) || !dims(&c, &nx, 2, rows, n))
    return NULL;
  const float *x = operand(&c, 0, "x", 4, nx);
  const void *w = operand(&c, 2, "w", type_size((int)w_type), n);
  float *out = operand(&c, 5, "out", 4, nx);
  if (c.failed) return NULL;
  rmsnorm(x, w, (int)w_type, out, rows, n, (float)eps);
  return NULL;
}

static napi_value js_rope(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "rope", 10)) return NULL;
  int64_t B = 0, T = 0, heads = 0, hd = 0, nx = 0, nt = 0;
  if (!int_arg(&c, 6, "B", 0, DIM_MAX, &B) || !int_arg(&c, 7, "T", 0, DIM_MAX, &T) ||
      !int_arg(&c, 8, "heads", 0, DIM_MAX, &heads) || !int_arg(&c, 9, "hd", 0, 1 << 16, &hd))
    return NULL;
  if (hd % 2) return fail(&c, "hd must be even, got %.0f", (double)hd), NULL;
  if (!dims(&c, &nx, 4, B, T, heads, hd) || !dims(&c, &nt, 2, T, hd)) return NULL;
  float *x = operand(&c, 0, "x", 4, nx);
  const float *cs = operand(&c, 2, "cos", 4, nt);
  const float *sn = operand(&c, 4, "sin", 4, nt);
  if (c.failed) return NULL;
  rope(x, cs, sn, B, T, heads, hd);
  return NULL;
}

static napi_value js_silu_mul(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "siluMul", 7)) return NULL;
  int64_t n = 0;
  if (!int_arg(&c, 6, "n", 0, DIM_MAX, &n)) return NULL;
  const float *g = operand(&c, 0, "gate", 4, n);
  const float *u = operand(&c, 2, "up", 4, n);
  float *out = operand(&c, 4, "out", 4, n);
  if (c.failed) return NULL;
  silu_mul(g, u, out, n);
  return NULL;
}

static napi_value js_gather_rows(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "gatherRows", 8)) return NULL;
  int64_t t_type = 0, vocab = 0, n = 0, ntab = 0, nout = 0;
  if (!int_arg(&c, 2, "tType", 0, 2, &t_type) || !int_arg(&c, 3, "vocab", 0, DIM_MAX, &vocab) ||
      !int_arg(&c, 4, "n", 0, DIM_MAX, &n) || !dims(&c, &ntab, 2, vocab, n))
    return NULL;
  uint8_t *data = NULL;
  size_t bytes = 0;
  napi_typedarray_type type = napi_uint8_array;
  if (!view_bytes(&c, 5, "ids", &data, &bytes, &type)) return NULL;
  if (type != napi_int32_array) return fail(&c, "ids must be an Int32Array"), NULL;
  const int32_t *ids = (const int32_t *)data;
  const int64_t count = (int64_t)(bytes / 4);
  for (int64_t i = 0; i < count; i++)
    if (ids[i] < 0 || ids[i] >= vocab) {
      return fail(&c, "ids[%lld] = %d is outside the table's %lld rows", (long long)i, ids[i], (long long)vocab), NULL;
    }
  if (!dims(&c, &nout, 2, count, n)) return NULL;
  const void *table = operand(&c, 0, "table", type_size((int)t_type), ntab);
  float *out = operand(&c, 6, "out", 4, nout);
  if (c.failed) return NULL;
  gather_rows(table, (int)t_type, n, ids, count, out);
  return NULL;
}

static napi_value js_to_float32(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "toFloat32", 6)) return NULL;
  int64_t type = 0, n = 0;
  if (!int_arg(&c, 2, "srcType", 0, 2, &type) || !int_arg(&c, 5, "n", 0, DIM_MAX, &n)) return NULL;
  const void *src = operand(&c, 0, "src", type_size((int)type), n);
  float *out = operand(&c, 3, "out", 4, n);
  if (c.failed) return NULL;
  to_float32(src, (int)type, out, n);
  return NULL;
}

/* Element i of the array argument `arr` as a checked pointer to `count` elements of `es` bytes (offset 0); NULL for null. */
static void *array_operand(call_t *c, napi_value arr, uint32_t i, const char *name, size_t es, int64_t count, bool optional) {
  napi_value v;
  napi_valuetype t;
  if (c->failed) return NULL;
  if (napi_get_element(c->env, arr, i, &v) != napi_ok || napi_typeof(c->env, v, &t) != napi_ok) return fail(c, "%s: bad value", name), NULL;
  if (t == napi_null || t == napi_undefined) {
    if (!optional) fail(c, "%s is required", name);
    return NULL;
  }
  uint8_t *data = NULL;
  size_t bytes = 0;
  napi_typedarray_type type;
  napi_value saved = c->argv[0];
  c->argv[0] = v;
  const bool ok = view_bytes(c, 0, name, &data, &bytes, &type);
  c->argv[0] = saved;
  if (!ok) return NULL;
  if (((uintptr_t)data) % es != 0) return fail(c, "%s is not %zu-byte aligned", name, es), NULL;
  if ((__int128)count * (__int128)es > (__int128)bytes)
    return fail(c, "%s (%lld elements of %zu bytes) is larger than its %zu-byte array", name, (long long)count, es, bytes), NULL;
  return data;
}

/*
 * decoderLayer(views, dims): views = [x, h, norm1, norm2, wq, wk, wv, wo, wg, wu, wd, bq, bk, bv, bo, bg, bu, bd,
 * pastK, pastV, cos, sin, kOut, vOut] (null where absent), dims = [B, T, H, nH, nKV, hd, F, S0, kvB, wType,
 * window, eps, scale].
 */
static napi_value js_decoder_layer(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "decoderLayer", 2)) return NULL;
  bool is_arr = false;
  uint32_t nv = 0, nd = 0;
  if (napi_is_array(env, c.argv[0], &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, c.argv[0], &nv) != napi_ok || nv != 24)
    return fail(&c, "views must be an array of 24 entries"), NULL;
  if (napi_is_array(env, c.argv[1], &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, c.argv[1], &nd) != napi_ok || nd != 13)
    return fail(&c, "dims must be an array of 13 numbers"), NULL;
  static const char *const dim_names[13] = {"B", "T", "H", "nH", "nKV", "hd", "F", "S0", "kvB", "wType", "window", "eps", "scale"};
  double d[13];
  for (uint32_t i = 0; i < 13; i++) {
    napi_value v;
    if (napi_get_element(env, c.argv[1], i, &v) != napi_ok || napi_get_value_double(env, v, &d[i]) != napi_ok || !isfinite(d[i]))
      return fail(&c, "%s must be a finite number", dim_names[i]), NULL;
    if (i < 11 && (d[i] != floor(d[i]) || d[i] < 0 || d[i] > (double)DIM_MAX)) return fail(&c, "%s = %g is not a valid size", dim_names[i], d[i]), NULL;
  }
  layer_args a = {0};
  a.B = (long)d[0], a.T = (long)d[1], a.H = (long)d[2], a.nH = (long)d[3], a.nKV = (long)d[4], a.hd = (long)d[5];
  a.F = (long)d[6], a.S0 = (long)d[7], a.kvB = (long)d[8], a.w_type = (int)d[9], a.window = (long)d[10];
  a.eps = (float)d[11], a.scale = (float)d[12];
  if (a.nH < 1 || a.nKV < 1 || a.nH % a.nKV) return fail(&c, "nH must be a positive multiple of nKV"), NULL;
  if (a.hd < 2 || a.hd % 2 || a.hd > 65536) return fail(&c, "hd must be even, from 2 to 65536"), NULL;
  if (a.w_type > 2) return fail(&c, "wType must be 0, 1 or 2"), NULL;
  if (a.kvB != 1 && a.kvB != a.B) return fail(&c, "kvB must be 1 or B"), NULL;
  const int64_t rows = (int64_t)a.B * a.T, qw = a.nH * a.hd, kw = a.nKV * a.hd, S = a.S0 + a.T;
  if (a.H > DIM_MAX / (a.F + qw + 1) || rows > DIM_MAX / (a.H + qw + a.F + 1) || (int64_t)a.B * a.nKV * S * a.hd > DIM_MAX)
    return fail(&c, "operand sizes too large"), NULL;
  const size_t ws = type_size(a.w_type);
  napi_value views = c.argv[0];
  a.x = array_operand(&c, views, 0, "x", 4, rows * a.H, false);
  a.h = array_operand(&c, views, 1, "h", 4, rows * a.H, false);
  a.norm1 = array_operand(&c, views, 2, "norm1", 4, a.H, false);
  a.norm2 = array_operand(&c, views, 3, "norm2", 4, a.H, false);
  const int64_t outs[DL_NPROJ] = {qw, kw, kw, a.H, a.F, a.F, a.H}, ins[DL_NPROJ] = {a.H, a.H, a.H, qw, a.H, a.H, a.F};
  static const char *const wn[DL_NPROJ] = {"wq", "wk", "wv", "wo", "wg", "wu", "wd"};
  static const char *const bn[DL_NPROJ] = {"bq", "bk", "bv", "bo", "bg", "bu", "bd"};
  for (int i = 0; i < DL_NPROJ; i++) {
    a.w[i] = array_operand(&c, views, 4 + i, wn[i], ws, outs[i] * ins[i], false);
    a.bias[i] = array_operand(&c, views, 11 + i, bn[i], 4, outs[i], true);
  }
  const int64_t past = (int64_t)a.kvB * a.nKV * a.S0 * a.hd;
  a.past_k = array_operand(&c, views, 18, "pastK", 4, past, a.S0 == 0);
  a.past_v = array_operand(&c, views, 19, "pastV", 4, past, a.S0 == 0);
  a.cos = array_operand(&c, views, 20, "cos", 4, a.T * a.hd, false);
  a.sin = array_operand(&c, views, 21, "sin", 4, a.T * a.hd, false);
  a.k_out = array_operand(&c, views, 22, "kOut", 4, (int64_t)a.B * a.nKV * S * a.hd, true);
  a.v_out = array_operand(&c, views, 23, "vOut", 4, (int64_t)a.B * a.nKV * S * a.hd, a.k_out == NULL);
  if (c.failed) return NULL;
  if (!a.k_out) a.v_out = NULL;
  if (rows > 0 && decoder_layer(&a) != 0) napi_throw_error(env, NULL, "mka_native.decoderLayer: out of memory");
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "setThreads", 1)) return NULL;
  int64_t n = 0;
  const int most = 4 * cpu_get()->procs;
  if (!int_arg(&c, 0, "threads", 1, most, &n)) return NULL;
  if (pool_set_threads((int)n) != 0) napi_throw_error(env, NULL, "mka_native.setThreads: could not start the threads");
  return NULL;
}

/* Bench-only (not part of the kernel API): _openblasSgemm(path, threads, A, B, C, m, n, k, transB) -> ok. */
static napi_value js_openblas_sgemm(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "_openblasSgemm", 9)) return NULL;
  char path[512];
  size_t len = 0;
  int64_t threads = 0, m = 0, n = 0, k = 0, nab = 0;
  bool tb = false;
  if (napi_get_value_string_utf8(env, c.argv[0], path, sizeof path, &len) != napi_ok) return fail(&c, "path must be a string"), NULL;
  if (!int_arg(&c, 1, "threads", 1, 1024, &threads) || !int_arg(&c, 5, "m", 1, 1 << 20, &m) || !int_arg(&c, 6, "n", 1, 1 << 20, &n) ||
      !int_arg(&c, 7, "k", 1, 1 << 20, &k) || !bool_arg(&c, 8, "transB", &tb))
    return NULL;
  uint8_t *a, *b, *out;
  size_t ab, bb, cb;
  napi_typedarray_type t;
  if (!view_bytes(&c, 2, "A", &a, &ab, &t) || !view_bytes(&c, 3, "B", &b, &bb, &t) || !view_bytes(&c, 4, "C", &out, &cb, &t)) return NULL;
  if (!dims(&c, &nab, 2, m, k) || ab < (size_t)(4 * nab) || bb < (size_t)(4 * k * n) || cb < (size_t)(4 * m * n))
    return fail(&c, "operands too small"), NULL;
  napi_value ok;
  napi_get_boolean(env, openblas_sgemm(path, (int)threads, (const float *)a, (const float *)b, (float *)out, (int)m, (int)n, (int)k, tb) == 0, &ok);
  return ok;
}

static bool set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  return napi_set_named_property(env, obj, key, v) == napi_ok;
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  const mka_cpu *cpu = cpu_get();
  napi_value obj, isa, threads, procs, bf16, amx, name;
  if (napi_create_object(env, &obj) != napi_ok || napi_create_string_utf8(env, isa_name(cpu->isa), NAPI_AUTO_LENGTH, &isa) != napi_ok ||
      napi_create_int32(env, pool_threads(), &threads) != napi_ok || napi_create_int32(env, cpu->procs, &procs) != napi_ok ||
      napi_get_boolean(env, cpu->bf16_dot, &bf16) != napi_ok || napi_get_boolean(env, cpu->amx, &amx) != napi_ok ||
      napi_create_string_utf8(env, cpu->cpu, NAPI_AUTO_LENGTH, &name) != napi_ok || !set_prop(env, obj, "isa", isa) ||
      !set_prop(env, obj, "threads", threads) || !set_prop(env, obj, "procs", procs) || !set_prop(env, obj, "bf16Dot", bf16) ||
      !set_prop(env, obj, "amx", amx) || !set_prop(env, obj, "cpu", name)) {
    napi_throw_error(env, NULL, "mka_native.info: N-API call failed");
    return NULL;
  }
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  if (cpu_init(getenv("MKA_ISA"), getenv("MKA_BF16_DOT")) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "MKA_ISA=%s is not one of generic, avx2, avx512", getenv("MKA_ISA"));
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  if (pool_threads() == 1 && cpu_get()->procs > 1) pool_set_threads(cpu_get()->procs);
  napi_property_descriptor props[] = {
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"matmul", NULL, js_matmul, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
      {"rmsnorm", NULL, js_rmsnorm, NULL, NULL, NULL, napi_default, NULL},
      {"rope", NULL, js_rope, NULL, NULL, NULL, napi_default, NULL},
      {"siluMul", NULL, js_silu_mul, NULL, NULL, NULL, napi_default, NULL},
      {"gatherRows", NULL, js_gather_rows, NULL, NULL, NULL, napi_default, NULL},
      {"toFloat32", NULL, js_to_float32, NULL, NULL, NULL, napi_default, NULL},
      {"decoderLayer", NULL, js_decoder_layer, NULL, NULL, NULL, napi_default, NULL},
      {"_openblasSgemm", NULL, js_openblas_sgemm, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
    napi_throw_error(env, NULL, "mka_native: N-API call failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
