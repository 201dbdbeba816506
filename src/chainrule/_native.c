/* chainrule._native: fused CPU kernels for the hot elementwise and row-wise work of a training
 * step: every row of the elementwise table (activations, exp/log and friends, small powers;
 * generated from chainrule/backend/elementwise.py into _elementwise.h at build time, float32
 * and float64), row softmax, layer norm, 2x2 max pooling, the Adam update. Each kernel makes
 * one pass over its operands where NumPy needs one pass per arithmetic operation.
 *
 * Optional: the package works without it (chainrule.backend.native() is then None and every
 * op runs its NumPy code). The Python callers check dtype (float32), C-contiguity and shapes;
 * the kernels here check only that the buffers are large enough. The GIL is released while
 * a kernel runs.
 *
 * Built with plain -O3 (no -ffast-math: NaN and infinity behave as in NumPy). Reductions keep
 * explicit lane accumulators so that the compiler vectorizes them without reassociating
 * anything else; on x86-64 Linux each kernel is compiled for AVX-512, AVX2+FMA and baseline
 * and the loader picks the best one for the CPU (GCC's target_clones).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define HAVE_POOL 1
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif
#define INLINE static inline __attribute__((always_inline))
#define LANES 16

/* e^x for float32: 2^n e^r with n = round(x log2 e) and a two-constant (Cody-Waite) reduction
 * r = x - n ln 2, |r| <= ln(2)/2; e^r by Cephes' expf polynomial (about 1 ulp). Branch-free
 * so loops over it vectorize; exact 0 below -87, +inf above 88, NaN stays NaN. */
INLINE float exp_f(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    /* adding 1.5 * 2^23 rounds to an integer, which lands in the low mantissa bits */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t ti;
    memcpy(&ti, &t, 4);
    uint32_t bits = (ti - 0x4B400000u + 127u) << 23; /* 2^n, n in [-126, 127] */
    float s;
    memcpy(&s, &bits, 4);
    float y = p * s;
    y = x < -87.0f ? 0.0f : y;
    y = x > 88.0f ? INFINITY : y;
    return y;
}

/* Phi(x), the standard normal CDF: Phi(x) = erfc(-x / sqrt 2) / 2, with erfc(z) for z >= 0 by
 * Numerical Recipes' Chebyshev fit t exp(-z^2 + P(t)), t = 1 / (1 + z / 2) (relative error
 * below 1.2e-7), so both tails keep full relative accuracy. */
INLINE float phi_cdf(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float half = 0.5f * t * exp_f(p - z * z); /* Phi(-|x|) */
    return x < 0.0f ? half : 1.0f - half;
}

/* log x for float32 (Cephes' logf): x = m 2^e with m in [sqrt(1/2), sqrt 2), log(m) by a
 * degree-9 polynomial in m - 1 (about 1 ulp); subnormals scaled first. Branch-free; NaN and
 * negative give NaN, 0 gives -inf, inf gives inf. */
INLINE float log_f(float x) {
    int sub = x < 1.17549435e-38f;
    float xs = sub ? x * 8388608.0f : x;
    uint32_t ib;
    memcpy(&ib, &xs, 4);
    int e = (int)((ib >> 23) & 0xffu) - 126 - (sub ? 23 : 0);
    uint32_t mb = (ib & 0x007fffffu) | 0x3f000000u; /* m in [0.5, 1) */
    float m;
    memcpy(&m, &mb, 4);
    int lo = m < 0.707106781186547524f;
    e -= lo;
    m = lo ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    float fe = (float)e;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    float r = m + y + 0.693359375f * fe;
    r = x == INFINITY ? x : r;
    r = x == 0.0f ? -INFINITY : r;
    r = (x < 0.0f || x != x) ? NAN : r;
    return r;
}

/* log(1 + x): log(u) x / (u - 1) with u = 1 + x rounded (the quotient cancels u's rounding
 * error), x itself where u == 1; inf stays inf */
INLINE float log1p_f(float x) {
    float u = 1.0f + x;
    float d = u - 1.0f;
    float r = log_f(u) * (x / (d == 0.0f ? 1.0f : d));
    r = d == 0.0f ? x : r;
    return x == INFINITY ? x : r;
}

/* e^x - 1 (Kahan): (u - 1) x / log(u) with u = e^x rounded; x itself where u == 1 */
INLINE float expm1_f(float x) {
    float u = exp_f(x);
    float lu = log_f(u);
    float r = (u - 1.0f) * (x / (lu == 0.0f ? 1.0f : lu));
    r = u == 1.0f ? x : r;
    r = x < -87.0f ? -1.0f : r;
    return x > 88.0f ? INFINITY : r;
}

/* tanh x (Cephes' tanhf): an odd polynomial below 0.625, 1 - 2 / (e^{2|x|} + 1) above */
INLINE float tanh_f(float x) {
    float a = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float big = 1.0f - 2.0f / (exp_f(a + a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

INLINE float sigmoid_f(float u) { return 1.0f / (1.0f + exp_f(-u)); }
INLINE double sigmoid_d(double u) { return 1.0 / (1.0 + exp(-u)); }
INLINE double ncdf_d(double x) { return 0.5 * erfc(-x * 0.70710678118654752440); }

/* x^p for p with 2p an integer, |p| < 16: square-and-multiply over p's integer part, times
 * sqrt(x) for a half; the selections are on p only, so loops over x vectorize. -inf to a
 * half-integral power above 1/2 is inf (0 for its negative) as C's pow; +-1/2 are sqrt and
 * 1/sqrt exactly, as PyTorch computes them. */
#define POWI_BODY(T, SQRT)                                                                \
    T a = p < 0 ? -p : p;                                                                 \
    int n = (int)a;                                                                       \
    T r = 1, b = x;                                                                       \
    r = (n & 1) ? r * b : r;                                                              \
    b = b * b;                                                                            \
    r = (n & 2) ? r * b : r;                                                              \
    b = b * b;                                                                            \
    r = (n & 4) ? r * b : r;                                                              \
    b = b * b;                                                                            \
    r = (n & 8) ? r * b : r;                                                              \
    r = (a != (T)n) ? ((n && x == -(T)INFINITY) ? (T)INFINITY : r * SQRT(x)) : r;        \
    return p < 0 ? (T)1 / r : r;
INLINE float powi_f(float x, float p) { POWI_BODY(float, sqrtf) }
INLINE double powi_d(double x, double p) { POWI_BODY(double, sqrt) }

/* the generated kernels of every row of chainrule/backend/elementwise.py's table:
 * ew_<name>_{fwd,bwd}_{f32,f64} and the dispatch tables EW_NAMES, EW_FWD_F32, ... */
#include "_elementwise.h"

INLINE float row_sum(const float *a, Py_ssize_t n) {
    float acc[LANES] = {0};
    Py_ssize_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += a[j + k];
    float s = 0.0f;
    for (int k = 0; k < LANES; k++) s += acc[k];
    for (; j < n; j++) s += a[j];
    return s;
}

INLINE float row_dot(const float *a, const float *b, Py_ssize_t n) {
    float acc[LANES] = {0};
    Py_ssize_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += a[j + k] * b[j + k];
    float s = 0.0f;
    for (int k = 0; k < LANES; k++) s += acc[k];
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

INLINE float row_max(const float *a, Py_ssize_t n) {
    float acc[LANES];
    for (int k = 0; k < LANES; k++) acc[k] = -INFINITY;
    Py_ssize_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] = a[j + k] > acc[k] ? a[j + k] : acc[k];
    float m = -INFINITY;
    for (int k = 0; k < LANES; k++) m = acc[k] > m ? acc[k] : m;
    for (; j < n; j++) m = a[j] > m ? a[j] : m;
    return m;
}

/* Softmax of each row of scale * S (rows x n, scale > 0) in place. With L > 0, causal: row r
 * is query i = r mod L of an (L, n) block and sees keys j <= i (PyTorch's is_causal, aligned
 * to the top left); the rest become 0. A NaN in the seen part of a row makes the whole row
 * NaN, as in NumPy. */
MULTIVERSION
static void softmax_rows(float *S, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t L, float scale) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        float *a = S + r * n;
        Py_ssize_t c = L > 0 && r % L + 1 < n ? r % L + 1 : n; /* keys seen */
        float m = row_max(a, c);
        for (Py_ssize_t j = 0; j < c; j++) a[j] = exp_f((a[j] - m) * scale);
        float inv = 1.0f / row_sum(a, c);
        for (Py_ssize_t j = 0; j < c; j++) a[j] *= inv;
        for (Py_ssize_t j = c; j < n; j++) a[j] = 0.0f;
    }
}

/* dS = scale A (dA - sum_row(dA A)), in place on dA (the gradient of S for A = softmax(scale
 * S)) */
MULTIVERSION
static void softmax_bwd_rows(float *gA, const float *A, Py_ssize_t rows, Py_ssize_t n,
                             float scale) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        float *g = gA + r * n;
        const float *a = A + r * n;
        float d = row_dot(g, a, n);
        for (Py_ssize_t j = 0; j < n; j++) g[j] = a[j] * (g[j] - d) * scale;
    }
}

/* Layer norm of each row of x (rows x n): xh = (x - mean) rstd, y = xh w + b (w, b may be
 * NULL); saves xh and rstd for the backward. */
MULTIVERSION
static void layernorm_fwd(const float *x, const float *w, const float *b, float *y, float *xh,
                          float *rstd, Py_ssize_t rows, Py_ssize_t n, float eps) {
    float inv_n = 1.0f / (float)n;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *hr = xh + r * n, *yr = y + r * n;
        float mu = row_sum(xr, n) * inv_n;
        for (Py_ssize_t j = 0; j < n; j++) hr[j] = xr[j] - mu;
        float rs = 1.0f / sqrtf(row_dot(hr, hr, n) * inv_n + eps);
        rstd[r] = rs;
        for (Py_ssize_t j = 0; j < n; j++) hr[j] *= rs;
        if (w && b)
            for (Py_ssize_t j = 0; j < n; j++) yr[j] = hr[j] * w[j] + b[j];
        else if (w)
            for (Py_ssize_t j = 0; j < n; j++) yr[j] = hr[j] * w[j];
        else
            memcpy(yr, hr, (size_t)n * sizeof(float));
    }
}

/* With gh = g w: dx = rstd (gh - mean(gh) - xh mean(gh xh)); dw = sum_rows g xh, db = sum_rows
 * g, accumulated in double. gx, gw, gb may each be NULL (not needed). */
MULTIVERSION
static void layernorm_bwd(const float *g, const float *xh, const float *rstd, const float *w,
                          float *gx, double *gw, double *gb, float *scratch, Py_ssize_t rows,
                          Py_ssize_t n) {
    float inv_n = 1.0f / (float)n;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *gr = g + r * n, *hr = xh + r * n;
        if (gw)
            for (Py_ssize_t j = 0; j < n; j++) gw[j] += (double)(gr[j] * hr[j]);
        if (gb)
            for (Py_ssize_t j = 0; j < n; j++) gb[j] += (double)gr[j];
        if (!gx) continue;
        const float *gh = gr;
        if (w) {
            for (Py_ssize_t j = 0; j < n; j++) scratch[j] = gr[j] * w[j];
            gh = scratch;
        }
        float a = row_sum(gh, n) * inv_n;
        float c = row_dot(gh, hr, n) * inv_n;
        float rs = rstd[r];
        float *out = gx + r * n;
        for (Py_ssize_t j = 0; j < n; j++) out[j] = rs * (gh[j] - a - hr[j] * c);
    }
}

/* One Adam/AdamW step in place (see chainrule.optim.Adam):
 *   g <- -g if maximize;  g <- g + l2 p;  p <- p decay;
 *   m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;  p <- p - m / (a sqrt(v) + c)  */
MULTIVERSION
static void adam_step(float *p, const float *g, float *m, float *v, Py_ssize_t n, float b1,
                      float b2, float l2, float decay, float a, float c, int maximize) {
    float sgn = maximize ? -1.0f : 1.0f;
    for (Py_ssize_t i = 0; i < n; i++) {
        float pi = p[i];
        float gi = sgn * g[i] + l2 * pi;
        pi *= decay;
        float mi = m[i] + (1.0f - b1) * (gi - m[i]);
        float vi = b2 * v[i] + (1.0f - b2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - mi / (a * sqrtf(vi) + c);
    }
}

/* 2x2 max pooling with stride 2 (windows that do not overlap) of each (H, W) plane, the
 * H x W corner that Ho x Wo windows cover: y = the window's maximum, NaN if it holds one. */
MULTIVERSION
static void maxpool2_fwd(const float *x, float *y, Py_ssize_t planes, Py_ssize_t H,
                         Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t Wo) {
    for (Py_ssize_t p = 0; p < planes; p++)
        for (Py_ssize_t oh = 0; oh < Ho; oh++) {
            const float *x0 = x + (p * H + 2 * oh) * W;
            float *yr = y + (p * Ho + oh) * Wo;
            for (Py_ssize_t ow = 0; ow < Wo; ow++) {
                const float *w = x0 + 2 * ow;
                float v0 = w[0], v1 = w[1], v2 = w[W], v3 = w[W + 1];
                float m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
                float m = m23 > m01 ? m23 : m01;
                int nan = v0 != v0 || v1 != v1 || v2 != v2 || v3 != v3;
                yr[ow] = nan ? NAN : m;
            }
        }
}

/* ------------------------------------------------------------------------ Python bindings */

static int check_len(Py_buffer *b, Py_ssize_t n, size_t item, const char *what) {
    if (b->len < n * (Py_ssize_t)item) {
        PyErr_Format(PyExc_ValueError, "chainrule._native: %s holds %zd bytes, needs %zd", what,
                     b->len, n * (Py_ssize_t)item);
        return 0;
    }
    return 1;
}

/* an optional buffer argument: None gives NULL */
static int opt_buffer(PyObject *o, Py_buffer *b, int writable) {
    if (o == Py_None) {
        b->buf = NULL;
        b->obj = NULL;
        b->len = 0;
        return 1;
    }
    return PyObject_GetBuffer(o, b, writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS
                                             : PyBUF_C_CONTIGUOUS) == 0;
}

static void release(Py_buffer *b) {
    if (b->obj) PyBuffer_Release(b);
}

static PyObject *py_softmax_rows(PyObject *self, PyObject *args) {
    Py_buffer S;
    Py_ssize_t n, L;
    float scale = 1.0f;
    if (!PyArg_ParseTuple(args, "w*nn|f", &S, &n, &L, &scale)) return NULL;
    PyObject *res = NULL;
    if (n <= 0 || (S.len / 4) % n != 0)
        PyErr_SetString(PyExc_ValueError, "chainrule._native.softmax_rows: bad row length");
    else {
        Py_ssize_t rows = S.len / 4 / n;
        Py_BEGIN_ALLOW_THREADS
        softmax_rows(S.buf, rows, n, L, scale);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&S);
    return res;
}

static PyObject *py_softmax_backward(PyObject *self, PyObject *args) {
    Py_buffer gA, A;
    Py_ssize_t n;
    float scale = 1.0f;
    if (!PyArg_ParseTuple(args, "w*y*n|f", &gA, &A, &n, &scale)) return NULL;
    PyObject *res = NULL;
    Py_ssize_t total = gA.len / 4;
    if (n <= 0 || total % n != 0)
        PyErr_SetString(PyExc_ValueError, "chainrule._native.softmax_backward: bad row length");
    else if (check_len(&A, total, 4, "A")) {
        Py_BEGIN_ALLOW_THREADS
        softmax_bwd_rows(gA.buf, A.buf, total / n, n, scale);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&gA);
    PyBuffer_Release(&A);
    return res;
}

static PyObject *py_layernorm_forward(PyObject *self, PyObject *args) {
    Py_buffer x, y, xh, rstd, w = {0}, b = {0};
    PyObject *wo, *bo;
    Py_ssize_t n;
    float eps;
    if (!PyArg_ParseTuple(args, "y*OOw*w*w*nf", &x, &wo, &bo, &y, &xh, &rstd, &n, &eps))
        return NULL;
    PyObject *res = NULL;
    Py_ssize_t total = x.len / 4;
    if (!opt_buffer(wo, &w, 0) || !opt_buffer(bo, &b, 0)) goto done;
    if (n <= 0 || total % n != 0) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native.layernorm_forward: bad row length");
        goto done;
    }
    if (check_len(&y, total, 4, "y") && check_len(&xh, total, 4, "xh") &&
        check_len(&rstd, total / n, 4, "rstd") && (!w.buf || check_len(&w, n, 4, "w")) &&
        (!b.buf || check_len(&b, n, 4, "b"))) {
        Py_BEGIN_ALLOW_THREADS
        layernorm_fwd(x.buf, w.buf, b.buf, y.buf, xh.buf, rstd.buf, total / n, n, eps);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    PyBuffer_Release(&xh);
    PyBuffer_Release(&rstd);
    release(&w);
    release(&b);
    return res;
}

static PyObject *py_layernorm_backward(PyObject *self, PyObject *args) {
    Py_buffer g, xh, rstd, w = {0}, gx = {0}, gw = {0}, gb = {0};
    PyObject *wo, *gxo, *gwo, *gbo;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*y*OOOOn", &g, &xh, &rstd, &wo, &gxo, &gwo, &gbo, &n))
        return NULL;
    PyObject *res = NULL;
    Py_ssize_t total = g.len / 4;
    float *scratch = NULL;
    if (!opt_buffer(wo, &w, 0) || !opt_buffer(gxo, &gx, 1) || !opt_buffer(gwo, &gw, 1) ||
        !opt_buffer(gbo, &gb, 1))
        goto done;
    if (n <= 0 || total % n != 0) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native.layernorm_backward: bad row length");
        goto done;
    }
    if (!(check_len(&xh, total, 4, "xh") && check_len(&rstd, total / n, 4, "rstd") &&
          (!w.buf || check_len(&w, n, 4, "w")) && (!gx.buf || check_len(&gx, total, 4, "gx")) &&
          (!gw.buf || check_len(&gw, n, 8, "gw")) && (!gb.buf || check_len(&gb, n, 8, "gb"))))
        goto done;
    scratch = malloc((size_t)n * sizeof(float));
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    layernorm_bwd(g.buf, xh.buf, rstd.buf, w.buf, gx.buf, gw.buf, gb.buf, scratch, total / n, n);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    free(scratch);
    PyBuffer_Release(&g);
    PyBuffer_Release(&xh);
    PyBuffer_Release(&rstd);
    release(&w);
    release(&gx);
    release(&gw);
    release(&gb);
    return res;
}

static PyObject *py_adam_step(PyObject *self, PyObject *args) {
    Py_buffer p, g, m, v;
    float b1, b2, l2, decay, a, c;
    int maximize;
    if (!PyArg_ParseTuple(args, "w*y*w*w*ffffffp", &p, &g, &m, &v, &b1, &b2, &l2, &decay, &a,
                          &c, &maximize))
        return NULL;
    PyObject *res = NULL;
    Py_ssize_t n = p.len / 4;
    if (check_len(&g, n, 4, "g") && check_len(&m, n, 4, "exp_avg") &&
        check_len(&v, n, 4, "exp_avg_sq")) {
        Py_BEGIN_ALLOW_THREADS
        adam_step(p.buf, g.buf, m.buf, v.buf, n, b1, b2, l2, decay, a, c, maximize);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&p);
    PyBuffer_Release(&g);
    PyBuffer_Release(&m);
    PyBuffer_Release(&v);
    return res;
}

static PyObject *py_maxpool2_forward(PyObject *self, PyObject *args) {
    Py_buffer x, y;
    Py_ssize_t planes, H, W, Ho, Wo;
    if (!PyArg_ParseTuple(args, "y*w*nnnnn", &x, &y, &planes, &H, &W, &Ho, &Wo)) return NULL;
    PyObject *res = NULL;
    if (planes < 0 || Ho < 0 || Wo < 0 || 2 * Ho > H || 2 * Wo > W)
        PyErr_SetString(PyExc_ValueError, "chainrule._native.maxpool2_forward: bad dimensions");
    else if (check_len(&x, planes * H * W, 4, "x") && check_len(&y, planes * Ho * Wo, 4, "y")) {
        Py_BEGIN_ALLOW_THREADS
        maxpool2_fwd(x.buf, y.buf, planes, H, W, Ho, Wo);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    return res;
}


/* ----------------------------------------------------------------------------- threads
 * A pool of worker threads for the elementwise kernels: parallel_for splits [0, n) into one
 * contiguous chunk per thread (the caller takes the first) when n is large enough that the
 * split pays for the wake-up; workers block on a condition variable between jobs (never
 * spin, so they take no core from BLAS's threads). Rebuilt lazily after fork. */
#define POOL_MAX 64
#define POOL_GRAIN 32768 /* elements per thread below which a job runs on the caller alone */
typedef void (*range_fn)(void *arg, Py_ssize_t lo, Py_ssize_t hi);
static int pool_want = 1; /* threads in all, the caller included */
#ifdef HAVE_POOL
static int pool_started = 0;
static pthread_t pool_tid[POOL_MAX];
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_go = PTHREAD_COND_INITIALIZER, pool_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t pool_job_mu = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static unsigned long pool_gen = 0;
static int pool_pending = 0, pool_parts = 0;
static range_fn pool_fn;
static void *pool_arg;
static Py_ssize_t pool_n;

static void *pool_worker(void *p) {
    int id = (int)(intptr_t)p;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool_mu);
    for (;;) {
        while (pool_gen == seen) pthread_cond_wait(&pool_go, &pool_mu);
        seen = pool_gen;
        int parts = pool_parts;
        range_fn fn = pool_fn;
        void *arg = pool_arg;
        Py_ssize_t n = pool_n;
        pthread_mutex_unlock(&pool_mu);
        if (id < parts) fn(arg, n * id / parts, n * (id + 1) / parts);
        pthread_mutex_lock(&pool_mu);
        if (id < parts && --pool_pending == 0) pthread_cond_signal(&pool_done);
    }
    return NULL;
}

static void pool_after_fork(void) {
    /* the child has only the forking thread: start afresh */
    pthread_mutex_init(&pool_mu, NULL);
    pthread_mutex_init(&pool_job_mu, NULL);
    pthread_cond_init(&pool_go, NULL);
    pthread_cond_init(&pool_done, NULL);
    pool_started = 0;
    pool_gen = 0;
}

static int pool_start(int threads) {
    static int atfork = 0;
    if (!atfork) {
        pthread_atfork(NULL, NULL, pool_after_fork);
        atfork = 1;
    }
    while (pool_started < threads - 1) {
        if (pthread_create(&pool_tid[pool_started], NULL, pool_worker,
                           (void *)(intptr_t)(pool_started + 1)) != 0)
            break;
        pthread_detach(pool_tid[pool_started]);
        pool_started++;
    }
    return pool_started + 1;
}
#endif

/* fn over [0, n), split across the pool's threads where n is large; called without the GIL */
static void parallel_for(range_fn fn, void *arg, Py_ssize_t n) {
#ifdef HAVE_POOL
    int parts = pool_want;
    if (parts > 1 && n >= 2 * POOL_GRAIN) {
        if ((Py_ssize_t)parts > n / POOL_GRAIN) parts = (int)(n / POOL_GRAIN);
        pthread_mutex_lock(&pool_job_mu);
        pthread_mutex_lock(&pool_mu);
        int have = pool_start(parts);
        if (parts > have) parts = have;
        if (parts > 1) {
            pool_fn = fn;
            pool_arg = arg;
            pool_n = n;
            pool_parts = parts;
            pool_pending = parts - 1;
            pool_gen++;
            pthread_cond_broadcast(&pool_go);
            pthread_mutex_unlock(&pool_mu);
            fn(arg, 0, n / parts);
            pthread_mutex_lock(&pool_mu);
            while (pool_pending > 0) pthread_cond_wait(&pool_done, &pool_mu);
            pthread_mutex_unlock(&pool_mu);
            pthread_mutex_unlock(&pool_job_mu);
            return;
        }
        pthread_mutex_unlock(&pool_mu);
        pthread_mutex_unlock(&pool_job_mu);
    }
#endif
    fn(arg, 0, n);
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *args) {
    int n;
    if (!PyArg_ParseTuple(args, "i", &n)) return NULL;
    if (n < 1) {
        PyErr_Format(PyExc_ValueError, "set_num_threads: expected a positive count, got %d", n);
        return NULL;
    }
    pool_want = n > POOL_MAX ? POOL_MAX : n;
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *noargs) {
    return PyLong_FromLong(pool_want);
}

/* one elementwise job: row k, direction, dtype, and the buffers */
typedef struct {
    int k, bwd, isz;
    char *s, *a, *g, *o;
    const double *P;
} ew_job;

static void ew_range(void *arg, Py_ssize_t lo, Py_ssize_t hi) {
    ew_job *j = arg;
    Py_ssize_t off = lo * j->isz, n = hi - lo;
    char *a = j->a ? j->a + off : NULL;
    if (j->isz == 4) {
        if (j->bwd)
            EW_BWD_F32[j->k]((float *)(j->s + off), (float *)a, (float *)(j->g + off),
                             (float *)(j->o + off), n, j->P);
        else
            EW_FWD_F32[j->k]((float *)(j->s + off), (float *)(j->o + off), (float *)a, n, j->P);
    } else {
        if (j->bwd)
            EW_BWD_F64[j->k]((double *)(j->s + off), (double *)a, (double *)(j->g + off),
                             (double *)(j->o + off), n, j->P);
        else
            EW_FWD_F64[j->k]((double *)(j->s + off), (double *)(j->o + off), (double *)a, n,
                             j->P);
    }
}

/* pointwise(k, backward, itemsize, src, aux, g, out, params): row k of the elementwise table
 * over float32 (itemsize 4) or float64 (8) buffers of one length. Forward: out = f(src), and
 * aux (a buffer for rows that keep a value, else None) the kept value; g None. Backward: out =
 * the gradient from src (the saved x or y), aux (the kept value) and g. */
static PyObject *py_pointwise(PyObject *self, PyObject *args) {
    int k, bwd, isz;
    Py_buffer s, o, g = {0}, a = {0};
    PyObject *go, *ao, *po;
    if (!PyArg_ParseTuple(args, "iiiy*OOw*O", &k, &bwd, &isz, &s, &ao, &go, &o, &po))
        return NULL;
    PyObject *res = NULL;
    double P[4] = {0, 0, 0, 0};
    Py_ssize_t np = PySequence_Check(po) ? PySequence_Size(po) : -1;
    Py_ssize_t n = (isz == 4 || isz == 8) ? s.len / isz : 0;
    if (k < 0 || k >= EW_COUNT || (isz != 4 && isz != 8) || np != EW_NPARAMS[k] ||
        (EW_KEEPS[k] != (ao != Py_None))) {
        PyErr_SetString(PyExc_ValueError,
                        "chainrule._native.pointwise: bad row, dtype, params or kept buffer");
        goto done;
    }
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *v = PySequence_GetItem(po, i);
        if (!v) goto done;
        P[i] = PyFloat_AsDouble(v);
        Py_DECREF(v);
        if (PyErr_Occurred()) goto done;
    }
    if (!opt_buffer(bwd ? go : Py_None, &g, 0) || !opt_buffer(ao, &a, !bwd) ||
        !check_len(&o, n, isz, "out") || (bwd && !check_len(&g, n, isz, "g")) ||
        (a.buf && !check_len(&a, n, isz, "aux")))
        goto done;
    ew_job job = {k, bwd, isz, s.buf, a.buf, g.buf, o.buf, P};
    Py_BEGIN_ALLOW_THREADS
    parallel_for(ew_range, &job, n);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&s);
    PyBuffer_Release(&o);
    release(&g);
    release(&a);
    return res;
}

static PyObject *py_pointwise_names(PyObject *self, PyObject *noargs) {
    PyObject *t = PyTuple_New(EW_COUNT);
    if (!t) return NULL;
    for (int i = 0; i < EW_COUNT; i++) {
        PyObject *u = PyUnicode_FromString(EW_NAMES[i]);
        if (!u) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, u);
    }
    return t;
}

/* ======================================================= convolution and pooling kernels
 * Window geometry as in chainrule.nn.conv.ConvGeometry: x (N, C, H, W) in NCHW layout, a kh x kw
 * window with stride (sh, sw), dilation (dh, dw) and zero padding (ph, pw) on the left / top,
 * Ho x Wo output pixels; Hp x Wp the padded extent that the windows cover. Patch rows are
 * channels-last: the row of output pixel (n, ho, wo) holds x_pad[n, c, ho sh + i dh, wo sw + j dw]
 * at column (i kw + j) C + c, so a GEMM with the weight as (O, kh kw C) gives the output in
 * (N Ho Wo, O) layout. One sample at a time is moved into a small padded channels-last scratch
 * (zero border), from which each window row is a run of kw C contiguous values (dw = 1). */

typedef struct {
    Py_ssize_t N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, Hp, Wp;
} conv_geo;

/* xs (Hp, Wp, C) interior = sample x (C, H, W); the border is left as it is (zero) */
INLINE void to_padded_hwc(const float *x, float *xs, const conv_geo *g) {
    Py_ssize_t C = g->C, H = g->H, W = g->W, Wp = g->Wp;
    for (Py_ssize_t c = 0; c < C; c++)
        for (Py_ssize_t h = 0; h < H; h++) {
            const float *xr = x + (c * H + h) * W;
            float *d = xs + ((g->ph + h) * Wp + g->pw) * C + c;
            for (Py_ssize_t w = 0; w < W; w++) d[w * C] = xr[w];
        }
}

/* patch rows of samples [n0, n1) of x into rows ((n1 - n0) Ho Wo, kh kw C); xs is an
 * Hp Wp C scratch */
MULTIVERSION
static void conv_rows(const float *x, float *rows, float *xs, const conv_geo *g, Py_ssize_t n0,
                      Py_ssize_t n1) {
    Py_ssize_t C = g->C, kw = g->kw, Wp = g->Wp, K = g->kh * kw * C;
    memset(xs, 0, (size_t)(g->Hp * Wp * C) * sizeof(float));
    for (Py_ssize_t n = n0; n < n1; n++) {
        to_padded_hwc(x + n * C * g->H * g->W, xs, g);
        float *dst = rows + (n - n0) * g->Ho * g->Wo * K;
        for (Py_ssize_t ho = 0; ho < g->Ho; ho++)
            for (Py_ssize_t wo = 0; wo < g->Wo; wo++)
                for (Py_ssize_t i = 0; i < g->kh; i++) {
                    const float *src = xs + ((ho * g->sh + i * g->dh) * Wp + wo * g->sw) * C;
                    if (g->dw == 1) {
                        memcpy(dst, src, (size_t)(kw * C) * sizeof(float));
                        dst += kw * C;
                    } else
                        for (Py_ssize_t j = 0; j < kw; j++, dst += C)
                            memcpy(dst, src + j * g->dw * C, (size_t)C * sizeof(float));
                }
    }
}

/* the adjoint of conv_rows: gx (samples n0..n1, C, H, W) = the sum of each patch-row entry of
 * cols onto the input pixel it was copied from, kernel offset by kernel offset (i, j) in order
 * (so each pixel's terms are added in the order of NumPy's col2im); gs is an Hp Wp C scratch */
MULTIVERSION
static void conv_rows_adjoint(const float *cols, float *gx, float *gs, const conv_geo *g,
                              Py_ssize_t n0, Py_ssize_t n1) {
    Py_ssize_t C = g->C, H = g->H, W = g->W, kw = g->kw, Wp = g->Wp, K = g->kh * kw * C;
    for (Py_ssize_t n = n0; n < n1; n++) {
        memset(gs, 0, (size_t)(g->Hp * Wp * C) * sizeof(float));
        const float *src = cols + (n - n0) * g->Ho * g->Wo * K;
        for (Py_ssize_t i = 0; i < g->kh; i++)
            for (Py_ssize_t j = 0; j < kw; j++)
                for (Py_ssize_t ho = 0; ho < g->Ho; ho++)
                    for (Py_ssize_t wo = 0; wo < g->Wo; wo++) {
                        const float *s = src + (ho * g->Wo + wo) * K + (i * kw + j) * C;
                        float *d = gs + ((ho * g->sh + i * g->dh) * Wp + wo * g->sw +
                                         j * g->dw) * C;
                        for (Py_ssize_t c = 0; c < C; c++) d[c] += s[c];
                    }
        float *out = gx + n * C * H * W;
        for (Py_ssize_t c = 0; c < C; c++)
            for (Py_ssize_t h = 0; h < H; h++) {
                const float *s = gs + ((g->ph + h) * Wp + g->pw) * C + c;
                float *o = out + (c * H + h) * W;
                for (Py_ssize_t w = 0; w < W; w++) o[w] = s[w * C];
            }
    }
}

/* out (N, O, P) = a (N, P, O) transposed per sample, plus b[o] where b is given; by tiles of
 * 8 x 8 so that both sides are read and written in runs */
MULTIVERSION
static void nhwc_to_nchw(const float *a, float *out, const float *b, Py_ssize_t N,
                         Py_ssize_t P, Py_ssize_t O) {
    for (Py_ssize_t n = 0; n < N; n++) {
        const float *an = a + n * P * O;
        float *on = out + n * O * P;
        for (Py_ssize_t o0 = 0; o0 < O; o0 += 8)
            for (Py_ssize_t p0 = 0; p0 < P; p0 += 8) {
                Py_ssize_t oe = o0 + 8 < O ? o0 + 8 : O, pe = p0 + 8 < P ? p0 + 8 : P;
                for (Py_ssize_t o = o0; o < oe; o++) {
                    float bo = b ? b[o] : 0.0f;
                    for (Py_ssize_t p = p0; p < pe; p++)
                        on[o * P + p] = b ? an[p * O + o] + bo : an[p * O + o];
                }
            }
    }
}

/* out (N, P, O) = a (N, O, P) transposed per sample (the inverse layout change) */
MULTIVERSION
static void nchw_to_nhwc(const float *a, float *out, Py_ssize_t N, Py_ssize_t O, Py_ssize_t P) {
    for (Py_ssize_t n = 0; n < N; n++) {
        const float *an = a + n * O * P;
        float *on = out + n * P * O;
        for (Py_ssize_t p0 = 0; p0 < P; p0 += 8)
            for (Py_ssize_t o0 = 0; o0 < O; o0 += 8) {
                Py_ssize_t oe = o0 + 8 < O ? o0 + 8 : O, pe = p0 + 8 < P ? p0 + 8 : P;
                for (Py_ssize_t p = p0; p < pe; p++)
                    for (Py_ssize_t o = o0; o < oe; o++) on[p * O + o] = an[o * P + p];
            }
    }
}

/* A convolution with few input channels (groups 1) and stride 1 along the width, directly:
 * y[n, o] = b[o] + sum over c, i, j of w[o, c, i, j] x_pad[n, c, ho sh + i dh, wo + j dw]. Each
 * sample is copied into xs (C, Hp, Ws), padded and with rows of Ws >= Wp values (zeros past the
 * input); each block of 4 output channels x 16 outputs of a row is 8 vectors of 8 lanes,
 * summed over all C kh kw taps in registers. */
#define DIRECT_LANES 8
INLINE Py_ssize_t direct_row(const conv_geo *g) {
    Py_ssize_t need = (g->Wo + 2 * DIRECT_LANES - 1) / (2 * DIRECT_LANES) * 2 * DIRECT_LANES +
                      g->dw * (g->kw - 1);
    return need > g->Wp ? need : g->Wp;
}

typedef float v8f __attribute__((vector_size(32)));

/* OB output channels (from o, weights wt of T taps each) x QB runs of 8 outputs from q0 */
INLINE void direct_block(const float *x0, const Py_ssize_t *offs, Py_ssize_t T,
                         const float *wt, const float *b, float *y, Py_ssize_t ystride,
                         Py_ssize_t q0, Py_ssize_t Wo, const int OB, const int QB) {
    v8f acc[4][2] = {{{0}}};
    for (int a = 0; a < OB; a++) {
        float bo = b ? b[a] : 0.0f;
        for (int q = 0; q < QB; q++) acc[a][q] = (v8f){bo, bo, bo, bo, bo, bo, bo, bo};
    }
    for (Py_ssize_t t = 0; t < T; t++) {
        v8f xv[2] = {{0}};
        for (int q = 0; q < QB; q++) memcpy(&xv[q], x0 + offs[t] + q0 + q * DIRECT_LANES, 32);
        for (int a = 0; a < OB; a++) {
            float wv = wt[a * T + t];
            for (int q = 0; q < QB; q++) acc[a][q] += wv * xv[q];
        }
    }
    Py_ssize_t m = Wo - q0 < QB * DIRECT_LANES ? Wo - q0 : QB * DIRECT_LANES;
    for (int a = 0; a < OB; a++) {
        float out[2 * DIRECT_LANES];
        memcpy(out, acc[a], (size_t)QB * 32);
        memcpy(y + a * ystride + q0, out, (size_t)m * sizeof(float));
    }
}

MULTIVERSION
static void conv_direct(const float *x, const float *w, const float *b, float *y, float *xs,
                        Py_ssize_t *offs, const conv_geo *g, Py_ssize_t O) {
    Py_ssize_t C = g->C, H = g->H, W = g->W, Hp = g->Hp, Ws = direct_row(g), Ho = g->Ho;
    Py_ssize_t Wo = g->Wo, kh = g->kh, kw = g->kw, T = C * kh * kw, P = Ho * Wo;
    memset(xs, 0, (size_t)(C * Hp * Ws) * sizeof(float));
    for (Py_ssize_t c = 0; c < C; c++) /* tap t = (c kh + i) kw + j reads xs at offs[t] */
        for (Py_ssize_t i = 0; i < kh; i++)
            for (Py_ssize_t j = 0; j < kw; j++)
                offs[(c * kh + i) * kw + j] = (c * Hp + i * g->dh) * Ws + j * g->dw;
    for (Py_ssize_t n = 0; n < g->N; n++) {
        for (Py_ssize_t c = 0; c < C; c++)
            for (Py_ssize_t h = 0; h < H; h++)
                memcpy(xs + (c * Hp + g->ph + h) * Ws + g->pw, x + ((n * C + c) * H + h) * W,
                       (size_t)W * sizeof(float));
        for (Py_ssize_t ho = 0; ho < Ho; ho++) {
            const float *x0 = xs + ho * g->sh * Ws;
            Py_ssize_t o = 0;
            for (; o + 4 <= O; o += 4) {
                float *yr = y + (n * O + o) * P + ho * Wo;
                const float *bo = b ? b + o : NULL;
                Py_ssize_t q0 = 0;
                for (; q0 + DIRECT_LANES < Wo; q0 += 2 * DIRECT_LANES)
                    direct_block(x0, offs, T, w + o * T, bo, yr, P, q0, Wo, 4, 2);
                if (q0 < Wo) direct_block(x0, offs, T, w + o * T, bo, yr, P, q0, Wo, 4, 1);
            }
            for (; o < O; o++) {
                float *yr = y + (n * O + o) * P + ho * Wo;
                const float *bo = b ? b + o : NULL;
                Py_ssize_t q0 = 0;
                for (; q0 + DIRECT_LANES < Wo; q0 += 2 * DIRECT_LANES)
                    direct_block(x0, offs, T, w + o * T, bo, yr, P, q0, Wo, 1, 2);
                if (q0 < Wo) direct_block(x0, offs, T, w + o * T, bo, yr, P, q0, Wo, 1, 1);
            }
        }
    }
}

/* The gradient of 2x2 max pooling with stride 2 (maxpool2_fwd's y): each window's g goes to
 * its first pixel equal to y (the last pixel when none is, e.g. for NaN), zeros elsewhere,
 * including rows and columns past 2 Ho x 2 Wo. */
MULTIVERSION
static void maxpool2_bwd(const float *x, const float *y, const float *g, float *gx,
                         Py_ssize_t planes, Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ho,
                         Py_ssize_t Wo) {
    for (Py_ssize_t p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *gp = gx + p * H * W;
        for (Py_ssize_t oh = 0; oh < Ho; oh++) {
            const float *x0 = xp + 2 * oh * W, *x1 = x0 + W;
            float *g0 = gp + 2 * oh * W, *g1 = g0 + W;
            const float *yr = y + (p * Ho + oh) * Wo, *gr = g + (p * Ho + oh) * Wo;
            for (Py_ssize_t ow = 0; ow < Wo; ow++) { /* branch-free: selects, no jumps */
                float m = yr[ow], v = gr[ow];
                int e0 = x0[2 * ow] == m;
                int e1 = !e0 & (x0[2 * ow + 1] == m);
                int e2 = !(e0 | e1) & (x1[2 * ow] == m);
                int e3 = !(e0 | e1 | e2);
                g0[2 * ow] = e0 ? v : 0.0f;
                g0[2 * ow + 1] = e1 ? v : 0.0f;
                g1[2 * ow] = e2 ? v : 0.0f;
                g1[2 * ow + 1] = e3 ? v : 0.0f;
            }
            for (Py_ssize_t w = 2 * Wo; w < W; w++) g0[w] = g1[w] = 0.0f;
        }
        if (2 * Ho < H) memset(gp + 2 * Ho * W, 0, (size_t)((H - 2 * Ho) * W) * sizeof(float));
    }
}

/* 2x2 average pooling with stride 2: y = (((x00 + x01) + x10) + x11) / d, summed in NumPy's
 * order */
MULTIVERSION
static void avgpool2_fwd(const float *x, float *y, Py_ssize_t planes, Py_ssize_t H,
                         Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t Wo, float d) {
    for (Py_ssize_t p = 0; p < planes; p++)
        for (Py_ssize_t oh = 0; oh < Ho; oh++) {
            const float *x0 = x + (p * H + 2 * oh) * W, *x1 = x0 + W;
            float *yr = y + (p * Ho + oh) * Wo;
            for (Py_ssize_t ow = 0; ow < Wo; ow++) {
                float s = x0[2 * ow] + x0[2 * ow + 1];
                s += x1[2 * ow];
                s += x1[2 * ow + 1];
                yr[ow] = s / d;
            }
        }
}

/* its gradient: g / d on each of the window's four pixels, zeros past 2 Ho x 2 Wo */
MULTIVERSION
static void avgpool2_bwd(const float *g, float *gx, Py_ssize_t planes, Py_ssize_t H,
                         Py_ssize_t W, Py_ssize_t Ho, Py_ssize_t Wo, float d) {
    for (Py_ssize_t p = 0; p < planes; p++) {
        float *gp = gx + p * H * W;
        for (Py_ssize_t oh = 0; oh < Ho; oh++) {
            float *g0 = gp + 2 * oh * W, *g1 = g0 + W;
            const float *gr = g + (p * Ho + oh) * Wo;
            for (Py_ssize_t ow = 0; ow < Wo; ow++) {
                float v = gr[ow] / d;
                g0[2 * ow] = g0[2 * ow + 1] = g1[2 * ow] = g1[2 * ow + 1] = v;
            }
            for (Py_ssize_t w = 2 * Wo; w < W; w++) g0[w] = g1[w] = 0.0f;
        }
        if (2 * Ho < H) memset(gp + 2 * Ho * W, 0, (size_t)((H - 2 * Ho) * W) * sizeof(float));
    }
}

/* -- bindings: the geometry comes as a tuple of 16 ints, ConvGeometry's N, C, H, W, kh, kw,
 * sh, sw, ph, pw, dh, dw, Ho, Wo, Hp, Wp */
static int parse_geo(PyObject *t, conv_geo *g) {
    Py_ssize_t *f = &g->N;
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 16) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native: a convolution geometry is a tuple "
                                          "of 16 ints (N, C, H, W, kh, kw, sh, sw, ph, pw, dh, "
                                          "dw, Ho, Wo, Hp, Wp)");
        return 0;
    }
    for (int k = 0; k < 16; k++) {
        f[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, k));
        if (f[k] == -1 && PyErr_Occurred()) return 0;
        if (f[k] < 0 || (k >= 4 && k < 8 && f[k] == 0) || (k >= 10 && k < 12 && f[k] == 0)) {
            PyErr_SetString(PyExc_ValueError, "chainrule._native: bad convolution geometry");
            return 0;
        }
    }
    if ((g->Ho && (g->Ho - 1) * g->sh + g->dh * (g->kh - 1) + 1 > g->Hp) ||
        (g->Wo && (g->Wo - 1) * g->sw + g->dw * (g->kw - 1) + 1 > g->Wp) ||
        g->ph + g->H > g->Hp || g->pw + g->W > g->Wp) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native: windows outside the padded input");
        return 0;
    }
    return 1;
}

static PyObject *py_conv_rows(PyObject *self, PyObject *args) {
    Py_buffer x, rows;
    PyObject *geo;
    Py_ssize_t n0, n1;
    int adjoint;
    if (!PyArg_ParseTuple(args, "y*w*Onnp", &x, &rows, &geo, &n0, &n1, &adjoint)) return NULL;
    /* adjoint: x is the patch rows (read) and rows the input gradient (written) */
    PyObject *res = NULL;
    conv_geo g;
    float *scratch = NULL;
    if (!parse_geo(geo, &g)) goto done;
    if (n0 < 0 || n1 < n0 || n1 > g.N) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native.conv_rows: bad sample range");
        goto done;
    }
    Py_ssize_t nrows = (n1 - n0) * g.Ho * g.Wo * g.kh * g.kw * g.C;
    Py_ssize_t nx = g.N * g.C * g.H * g.W;
    if (!(adjoint ? check_len(&x, nrows, 4, "cols") && check_len(&rows, nx, 4, "gx")
                  : check_len(&x, nx, 4, "x") && check_len(&rows, nrows, 4, "rows")))
        goto done;
    scratch = malloc((size_t)(g.Hp * g.Wp * g.C + 16) * sizeof(float));
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (adjoint)
        conv_rows_adjoint(x.buf, rows.buf, scratch, &g, n0, n1);
    else
        conv_rows(x.buf, rows.buf, scratch, &g, n0, n1);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    free(scratch);
    PyBuffer_Release(&x);
    PyBuffer_Release(&rows);
    return res;
}

static PyObject *py_conv_direct(PyObject *self, PyObject *args) {
    Py_buffer x, w, y, b = {0};
    PyObject *geo, *bo;
    Py_ssize_t O;
    if (!PyArg_ParseTuple(args, "y*y*Ow*On", &x, &w, &bo, &y, &geo, &O)) return NULL;
    PyObject *res = NULL;
    conv_geo g;
    float *scratch = NULL;
    if (!opt_buffer(bo, &b, 0) || !parse_geo(geo, &g)) goto done;
    if (g.sw != 1) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native.conv_direct: needs stride 1 along "
                                          "the width");
        goto done;
    }
    if (!(check_len(&x, g.N * g.C * g.H * g.W, 4, "x") &&
          check_len(&w, O * g.C * g.kh * g.kw, 4, "w") &&
          check_len(&y, g.N * O * g.Ho * g.Wo, 4, "y") && (!b.buf || check_len(&b, O, 4, "b"))))
        goto done;
    Py_ssize_t nxs = g.C * g.Hp * direct_row(&g) + 16, T = g.C * g.kh * g.kw;
    scratch = malloc((size_t)nxs * sizeof(float) + (size_t)T * sizeof(Py_ssize_t));
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    conv_direct(x.buf, w.buf, b.buf, y.buf, scratch, (Py_ssize_t *)(scratch + nxs), &g, O);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    free(scratch);
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    PyBuffer_Release(&y);
    release(&b);
    return res;
}

static PyObject *py_channels_last(PyObject *self, PyObject *args) {
    Py_buffer a, out, b = {0};
    PyObject *bo;
    Py_ssize_t N, P, O;
    int to_first;
    if (!PyArg_ParseTuple(args, "y*w*Onnnp", &a, &out, &bo, &N, &P, &O, &to_first))
        return NULL;
    PyObject *res = NULL;
    if (!opt_buffer(bo, &b, 0)) goto done;
    if (N < 0 || P < 0 || O < 0) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native.channels_last: bad dimensions");
        goto done;
    }
    if (check_len(&a, N * P * O, 4, "a") && check_len(&out, N * P * O, 4, "out") &&
        (!b.buf || check_len(&b, O, 4, "b"))) {
        Py_BEGIN_ALLOW_THREADS
        if (to_first)
            nhwc_to_nchw(a.buf, out.buf, b.buf, N, P, O);
        else
            nchw_to_nhwc(a.buf, out.buf, N, O, P);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&out);
    release(&b);
    return res;
}

static PyObject *py_pool2(PyObject *self, PyObject *args) {
    /* pool2(kind, a, b, c, out, planes, H, W, Ho, Wo, d): kind 0 = max backward (a = x, b = y,
     * c = g), 1 = average forward (a = x), 2 = average backward (a = g); b, c None if unused */
    int kind;
    Py_buffer a, out, b = {0}, c = {0};
    PyObject *bo, *co;
    Py_ssize_t planes, H, W, Ho, Wo;
    float d;
    if (!PyArg_ParseTuple(args, "iy*OOw*nnnnnf", &kind, &a, &bo, &co, &out, &planes, &H, &W,
                          &Ho, &Wo, &d))
        return NULL;
    PyObject *res = NULL;
    if (!opt_buffer(bo, &b, 0) || !opt_buffer(co, &c, 0)) goto done;
    Py_ssize_t nx = planes * H * W, ny = planes * Ho * Wo;
    if (kind < 0 || kind > 2 || planes < 0 || Ho < 0 || Wo < 0 || 2 * Ho > H || 2 * Wo > W ||
        (kind == 0 && (!b.buf || !c.buf))) {
        PyErr_SetString(PyExc_ValueError, "chainrule._native.pool2: bad arguments");
        goto done;
    }
    if (!(kind == 0 ? check_len(&a, nx, 4, "x") && check_len(&b, ny, 4, "y") &&
                          check_len(&c, ny, 4, "g") && check_len(&out, nx, 4, "gx")
          : kind == 1 ? check_len(&a, nx, 4, "x") && check_len(&out, ny, 4, "y")
                      : check_len(&a, ny, 4, "g") && check_len(&out, nx, 4, "gx")))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 0)
        maxpool2_bwd(a.buf, b.buf, c.buf, out.buf, planes, H, W, Ho, Wo);
    else if (kind == 1)
        avgpool2_fwd(a.buf, out.buf, planes, H, W, Ho, Wo, d);
    else
        avgpool2_bwd(a.buf, out.buf, planes, H, W, Ho, Wo, d);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&out);
    release(&b);
    release(&c);
    return res;
}
/* =================================================== end of convolution and pooling kernels */

static PyMethodDef methods[] = {
    {"set_num_threads", py_set_num_threads, METH_VARARGS,
     "set_num_threads(n): threads the elementwise kernels split large arrays across"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "the elementwise kernels' threads"},
    {"pointwise", py_pointwise, METH_VARARGS,
     "pointwise(k, backward, itemsize, src, aux, g, out, params): row k of the elementwise "
     "table"},
    {"pointwise_names", py_pointwise_names, METH_NOARGS,
     "the names of the elementwise table's rows, in kernel order"},
    {"softmax_rows", py_softmax_rows, METH_VARARGS,
     "softmax_rows(S, n, L[, scale]): softmax of each length-n row of scale * S in place; "
     "causal blocks of L rows when L > 0"},
    {"softmax_backward", py_softmax_backward, METH_VARARGS,
     "softmax_backward(gA, A, n[, scale]): gA <- scale A (gA - rowsum(gA A)) in place"},
    {"layernorm_forward", py_layernorm_forward, METH_VARARGS,
     "layernorm_forward(x, w, b, y, xh, rstd, n, eps)"},
    {"layernorm_backward", py_layernorm_backward, METH_VARARGS,
     "layernorm_backward(g, xh, rstd, w, gx, gw, gb, n); gw and gb are float64 accumulators"},
    {"adam_step", py_adam_step, METH_VARARGS,
     "adam_step(p, g, m, v, b1, b2, l2, decay, a, c, maximize)"},
    {"maxpool2_forward", py_maxpool2_forward, METH_VARARGS,
     "maxpool2_forward(x, y, planes, H, W, Ho, Wo): 2x2 max pooling, stride 2"},
    /* convolution and pooling */
    {"conv_rows", py_conv_rows, METH_VARARGS,
     "conv_rows(x, rows, geo, n0, n1, adjoint): channels-last patch rows of samples n0..n1 "
     "(adjoint: x is the rows, added back onto the input gradient rows)"},
    {"conv_direct", py_conv_direct, METH_VARARGS,
     "conv_direct(x, w, b, y, geo, O): a convolution with groups 1 and width stride 1, "
     "computed directly"},
    {"channels_last", py_channels_last, METH_VARARGS,
     "channels_last(a, out, b, N, P, O, to_first): (N, P, O) -> (N, O, P) plus b, or back"},
    {"pool2", py_pool2, METH_VARARGS,
     "pool2(kind, a, b, c, out, planes, H, W, Ho, Wo, d): 2x2 pooling with stride 2: max "
     "backward (0), average forward (1) or backward (2)"},
    /* end of convolution and pooling */
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "chainrule._native", "Fused float32 CPU kernels (optional).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
