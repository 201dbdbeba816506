/* chainrule._native: fused float32 CPU kernels for the hot elementwise and row-wise work of a
 * training step (GELU, row softmax, layer norm, 2x2 max pooling, the Adam update). Each kernel
 * makes one pass over its operands where NumPy needs one pass per arithmetic operation.
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

/* y = x Phi(x); with cdf given, also cdf = Phi(x) (saved for the backward) */
MULTIVERSION
static void gelu_fwd(const float *x, float *y, float *cdf, Py_ssize_t n) {
    if (cdf)
        for (Py_ssize_t i = 0; i < n; i++) {
            float c = phi_cdf(x[i]);
            cdf[i] = c;
            y[i] = x[i] * c;
        }
    else
        for (Py_ssize_t i = 0; i < n; i++) y[i] = x[i] * phi_cdf(x[i]);
}

/* dx = g (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi); Phi from cdf when given */
MULTIVERSION
static void gelu_bwd(const float *x, const float *g, const float *cdf, float *dx,
                     Py_ssize_t n) {
    if (cdf)
        for (Py_ssize_t i = 0; i < n; i++) {
            float xi = x[i];
            dx[i] = g[i] * (cdf[i] + xi * 0.39894228040143268f * exp_f(-0.5f * xi * xi));
        }
    else
        for (Py_ssize_t i = 0; i < n; i++) {
            float xi = x[i];
            dx[i] = g[i] * (phi_cdf(xi) + xi * 0.39894228040143268f * exp_f(-0.5f * xi * xi));
        }
}

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

static PyObject *py_gelu_forward(PyObject *self, PyObject *args) {
    Py_buffer x, y, cdf = {0};
    PyObject *cdfo = Py_None;
    if (!PyArg_ParseTuple(args, "y*w*|O", &x, &y, &cdfo)) return NULL;
    Py_ssize_t n = x.len / 4;
    PyObject *res = NULL;
    if (opt_buffer(cdfo, &cdf, 1) && check_len(&y, n, 4, "y") &&
        (!cdf.buf || check_len(&cdf, n, 4, "cdf"))) {
        Py_BEGIN_ALLOW_THREADS
        gelu_fwd(x.buf, y.buf, cdf.buf, n);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    release(&cdf);
    return res;
}

static PyObject *py_gelu_backward(PyObject *self, PyObject *args) {
    Py_buffer x, g, dx, cdf = {0};
    PyObject *cdfo = Py_None;
    if (!PyArg_ParseTuple(args, "y*y*w*|O", &x, &g, &dx, &cdfo)) return NULL;
    Py_ssize_t n = x.len / 4;
    PyObject *res = NULL;
    if (opt_buffer(cdfo, &cdf, 0) && check_len(&g, n, 4, "g") && check_len(&dx, n, 4, "dx") &&
        (!cdf.buf || check_len(&cdf, n, 4, "cdf"))) {
        Py_BEGIN_ALLOW_THREADS
        gelu_bwd(x.buf, g.buf, cdf.buf, dx.buf, n);
        Py_END_ALLOW_THREADS
        res = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&g);
    PyBuffer_Release(&dx);
    release(&cdf);
    return res;
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

static PyMethodDef methods[] = {
    {"gelu_forward", py_gelu_forward, METH_VARARGS,
     "gelu_forward(x, y[, cdf]): y = x Phi(x), and cdf = Phi(x) when given"},
    {"gelu_backward", py_gelu_backward, METH_VARARGS,
     "gelu_backward(x, g, dx[, cdf]): dx = g (Phi(x) + x phi(x)), Phi read from cdf if given"},
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "chainrule._native", "Fused float32 CPU kernels (optional).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
