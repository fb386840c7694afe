/* SSIM of one pair of 8-bit images in C (``metrics_u8.ssim_u8`` calls it for every image the batch jobs score).

   The same figure as ``metrics_u8.ssim_u8``'s OpenCV path: a symmetric Gaussian window, moments in float32 of the
   pixels centred on 128, the map averaged over the valid region (where the window lies inside the image) in
   float64. Only the valid outputs are filtered, the four moment maps (x, y, x^2 + y^2, x y) in one pass over each
   row, and the map is summed as its rows come: no full-size float copies, with the GIL released. The sums run in
   another order than OpenCV's: the two agree to about 1e-6 (``tests/test_metrics.py``). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#include "_multiversion.h" /* ssim_pair: an AVX2 version beside the baseline's on x86-64 */

#define MAX_TAPS 31

/* One image row's four moments filtered along the row, at the valid columns: out[k] for k < wide
   (wide = (w - taps + 1) * c values, channels interleaved). ``half``: taps / 2; the window is symmetric, so each
   pair of values equally far from the centre is added before it is weighed. ``f``: 4 * w * c floats of scratch. */
INLINE static void filter_row(const uint8_t *x, const uint8_t *y, Py_ssize_t c, Py_ssize_t len, Py_ssize_t wide,
                              const float *taps, int half, float *f, float *out) {
    float *fx = f, *fy = f + len, *fs = f + 2 * len, *fp = f + 3 * len;
    for (Py_ssize_t j = 0; j < len; j++) {
        fx[j] = (float)x[j] - 128.0f, fy[j] = (float)y[j] - 128.0f;
        fs[j] = fx[j] * fx[j] + fy[j] * fy[j], fp[j] = fx[j] * fy[j];
    }
    for (int q = 0; q < 4; q++) { /* x, y, x^2 + y^2, x y: each a run of sums along the row */
        const float *v = f + q * len + half * c;
        float *o = out + q * wide, t = taps[half];
        for (Py_ssize_t k = 0; k < wide; k++) o[k] = t * v[k];
        for (int d = 1; d <= half; d++) {
            const float *a = v - d * c, *b = v + d * c;
            t = taps[half + d];
            for (Py_ssize_t k = 0; k < wide; k++) o[k] += t * (a[k] + b[k]);
        }
    }
}

typedef struct {
    const uint8_t *x, *y;
    Py_ssize_t h, w, c;
    const float *taps;
    int n;
    float c1, c2;
} Pair;

/* The mean of the SSIM map over the valid region, or -1 where the buffers could not be had. */
MULTIVERSION static double ssim_pair(const Pair *p) {
    const int half = p->n / 2;
    const Py_ssize_t rows = p->h - 2 * half, wide = (p->w - 2 * half) * p->c, stride = p->w * p->c;
    /* Each image row's filtered moments, kept in a ring of n rows: row r in slot r % n. */
    float *ring = malloc(sizeof(float) * 4 * p->n * wide), *acc = malloc(sizeof(float) * 4 * wide);
    float *scratch = malloc(sizeof(float) * 4 * stride);
    if (!ring || !acc || !scratch) {
        free(ring), free(acc), free(scratch);
        return -1.0;
    }
    double total = 0.0;
    for (Py_ssize_t r = 0; r < p->h; r++) {
        float *slot = ring + 4 * (r % p->n) * wide;
        filter_row(p->x + r * stride, p->y + r * stride, p->c, stride, wide, p->taps, half, scratch, slot);
        if (r < 2 * half) continue;
        /* Output row r - half: the column filter over image rows r - 2 half .. r, pairs from the ends in. */
        const Py_ssize_t top = r - 2 * half;
        const float *mid = ring + 4 * ((top + half) % p->n) * wide;
        float t = p->taps[half];
        for (Py_ssize_t k = 0; k < 4 * wide; k++) acc[k] = t * mid[k];
        for (int d = 1; d <= half; d++) {
            const float *a = ring + 4 * ((top + half - d) % p->n) * wide, *b = ring + 4 * ((top + half + d) % p->n) * wide;
            t = p->taps[half + d];
            for (Py_ssize_t k = 0; k < 4 * wide; k++) acc[k] += t * (a[k] + b[k]);
        }
        const float *mx = acc, *my = acc + wide, *sq = acc + 2 * wide, *xy = acc + 3 * wide;
        float *map = scratch; /* the row's filtering is done with it */
        for (Py_ssize_t k = 0; k < wide; k++) {
            float var = sq[k] - (mx[k] * mx[k] + my[k] * my[k]); /* var_x + var_y */
            float cov = xy[k] - mx[k] * my[k];
            float ux = mx[k] + 128.0f, uy = my[k] + 128.0f;
            float num = (2.0f * ux * uy + p->c1) * (2.0f * cov + p->c2);
            float den = (ux * ux + uy * uy + p->c1) * (var + p->c2);
            map[k] = num / den;
        }
        double lanes[8] = {0}; /* eight running sums in float64, so that the sum vectorises */
        Py_ssize_t k = 0;
        for (; k + 8 <= wide; k += 8)
            for (int l = 0; l < 8; l++) lanes[l] += (double)map[k + l];
        for (; k < wide; k++) lanes[0] += (double)map[k];
        for (int l = 0; l < 8; l++) total += lanes[l];
    }
    free(ring), free(acc), free(scratch);
    return total / (double)(rows * wide);
}

static PyObject *ssim(PyObject *self, PyObject *args) {
    Py_buffer x, y, taps;
    Py_ssize_t h, w, c;
    float c1, c2;
    if (!PyArg_ParseTuple(args, "nnny*y*y*ff:ssim", &h, &w, &c, &x, &y, &taps, &c1, &c2)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = taps.len / (Py_ssize_t)sizeof(float);
    if (x.len != h * w * c || y.len != h * w * c || c < 1) {
        PyErr_Format(PyExc_ValueError, "x and y: expected %zd x %zd x %zd bytes each, got %zd and %zd", h, w, c, x.len,
                     y.len);
    } else if (taps.len % sizeof(float) || n % 2 == 0 || n > MAX_TAPS || h < n || w < n) {
        PyErr_Format(PyExc_ValueError, "taps: an odd window of float32 (at most %d) that fits %zd x %zd, got %zd bytes",
                     MAX_TAPS, h, w, taps.len);
    } else {
        const float *t = taps.buf;
        int symmetric = 1;
        for (Py_ssize_t i = 0; i < n; i++) symmetric &= t[i] == t[n - 1 - i];
        if (!symmetric) {
            PyErr_SetString(PyExc_ValueError, "taps: the window must be symmetric");
        } else {
            Pair pair = {x.buf, y.buf, h, w, c, t, (int)n, c1, c2};
            double value;
            Py_BEGIN_ALLOW_THREADS;
            value = ssim_pair(&pair);
            Py_END_ALLOW_THREADS;
            result = value < 0 ? PyErr_NoMemory() : PyFloat_FromDouble(value);
        }
    }
    PyBuffer_Release(&x), PyBuffer_Release(&y), PyBuffer_Release(&taps);
    return result;
}

/* The sum of squared differences of two byte buffers (exact in 64 bits: 150 M bytes at most 255 apart sum to
   under 2^44). */
MULTIVERSION static uint64_t sum_squares(const uint8_t *x, const uint8_t *y, Py_ssize_t n) {
    uint64_t total = 0;
    for (Py_ssize_t start = 0; start < n; start += 1 << 15) { /* 32 K products fit a 32-bit sum */
        const Py_ssize_t end = n - start < (1 << 15) ? n : start + (1 << 15);
        uint32_t part = 0;
        for (Py_ssize_t i = start; i < end; i++) {
            const int32_t d = (int32_t)x[i] - (int32_t)y[i];
            part += (uint32_t)(d * d);
        }
        total += part;
    }
    return total;
}

static PyObject *squared_error(PyObject *self, PyObject *args) {
    Py_buffer x, y;
    if (!PyArg_ParseTuple(args, "y*y*:squared_error", &x, &y)) return NULL;
    PyObject *result = NULL;
    if (x.len != y.len) {
        PyErr_Format(PyExc_ValueError, "x and y: expected the same size, got %zd and %zd bytes", x.len, y.len);
    } else {
        uint64_t total;
        Py_BEGIN_ALLOW_THREADS;
        total = sum_squares(x.buf, y.buf, x.len);
        Py_END_ALLOW_THREADS;
        result = PyLong_FromUnsignedLongLong(total);
    }
    PyBuffer_Release(&x), PyBuffer_Release(&y);
    return result;
}

static PyMethodDef methods[] = {
    {"squared_error", squared_error, METH_VARARGS,
     "squared_error(x, y) -> int\n\nThe sum of squared differences of two equally long C-contiguous uint8 buffers "
     "(``metrics_u8.squared_error_u8``); the GIL is released while it runs."},
    {"ssim", ssim, METH_VARARGS,
     "ssim(h, w, c, x, y, taps, c1, c2) -> float\n\nSSIM of two C-contiguous (h, w, c) uint8 images with the "
     "symmetric float32 window ``taps`` (``metrics_u8.ssim_u8``); the GIL is released while it runs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ssim", "SSIM and squared error of 8-bit image pairs in C.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__ssim(void) { return PyModule_Create(&module); }
