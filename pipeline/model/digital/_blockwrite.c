/* The digital layer's write and storage of one stego, block by block, in C (``cpu_path.CpuPath.store`` calls it).

   The same float32 arithmetic as ``cpu_path.py``'s NumPy path, on each 8x8 block while its pixels are in the core's
   first-level cache, with the GIL released: the block DCT of the cover's luma, the dithered QIM write of every
   level's coefficients in the blocks that carry the code, the inverse DCT of the change added to R, G and B, the clip
   that keeps luma (``clip_keeping_luma``), the rounding that keeps luma (``round_keeping_luma``), and the stored
   block's readings checked against the codeword (what ``CpuPath.settle`` checks first). Sums run in another order
   than NumPy's matrix products: a value on a rounding boundary can land a grey level apart
   (``tests/test_digital_block_writer.py`` bounds how often). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The block's steps are INLINE helpers of write_blocks, which is MULTIVERSION: on x86-64 an AVX2 version beside the
   baseline's, where a block's 8-wide rows fill a register (the same bytes either way). */
#include "_multiversion.h"

#define BLOCK 8
#define AREA (BLOCK * BLOCK)
#define MIDPOINTS 7

typedef struct {
    const float *cover;     /* (n, n, 3) grey levels */
    uint8_t *out;           /* (n, n, 3) the stored stego */
    uint8_t *wrong;         /* (g, g) 1: a carrying block whose stored readings differ from its codeword bits */
    const uint8_t *active;  /* (g, g) the blocks that carry the code */
    const int32_t *pos;     /* (t,) coefficient u * 8 + v of each slot of a block, every level's in turn */
    const uint8_t *bits;    /* (g, g, t) codeword bit of each slot */
    const float *dither;    /* (g, g, t) in [0, 1) */
    const float *step;      /* (t,) grey levels */
    const float *dct;       /* (8, 8) orthonormal DCT-II, row k the k-th basis vector */
    const float *weights;   /* (3,) luma weights of R, G, B */
    const float *midpoints; /* (7,) luma of the rounding codes' midpoints */
    Py_ssize_t n, t;
    float alpha, tolerance;
} Job;

static inline float luma3(const float *w, float r, float g, float b) { return r * w[0] + g * w[1] + b * w[2]; }

/* c = D y D^T of one block (both row-major 8x8): down the columns first, as ``cpu_path.block_dct``; each sum in
   order of its index. ``dt`` is D transposed: the innermost loops run along rows, which the compiler vectorises. */
INLINE static void dct8(const float *d, const float *dt, const float *y, float *c) {
    float tmp[AREA] = {0};
    for (int u = 0; u < BLOCK; u++)
        for (int i = 0; i < BLOCK; i++)
            for (int j = 0; j < BLOCK; j++) tmp[u * BLOCK + j] += d[u * BLOCK + i] * y[i * BLOCK + j];
    memset(c, 0, sizeof(float) * AREA);
    for (int u = 0; u < BLOCK; u++)
        for (int j = 0; j < BLOCK; j++)
            for (int v = 0; v < BLOCK; v++) c[u * BLOCK + v] += tmp[u * BLOCK + j] * dt[j * BLOCK + v];
}

/* x = D^T c D, the inverse of ``dct8``. */
INLINE static void idct8(const float *d, const float *dt, const float *c, float *x) {
    float tmp[AREA] = {0};
    for (int i = 0; i < BLOCK; i++)
        for (int u = 0; u < BLOCK; u++)
            for (int v = 0; v < BLOCK; v++) tmp[i * BLOCK + v] += dt[i * BLOCK + u] * c[u * BLOCK + v];
    memset(x, 0, sizeof(float) * AREA);
    for (int i = 0; i < BLOCK; i++)
        for (int v = 0; v < BLOCK; v++)
            for (int j = 0; j < BLOCK; j++) x[i * BLOCK + j] += tmp[i * BLOCK + v] * d[v * BLOCK + j];
}

/* Round to the nearest integer, ties to even (``np.round``), for |x| < 2^22: adding 1.5 * 2^23 leaves no fraction
   bits, and IEEE addition rounds to even. Exact, unlike a cast, and it vectorises where ``rintf`` needs SSE4.1. */
static inline float round_even(float x) { return (x + 12582912.0f) - 12582912.0f; }

/* floor(x) for |x| < 2^22. */
static inline float floor_small(float x) {
    float r = round_even(x);
    return r > x ? r - 1.0f : r;
}

static inline float clip255(float v) { return v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v); }

/* ``clip_keeping_luma`` of one pixel: clipped, the luma it lost put back on the channels with room, twice (a channel
   that takes the loss may clip in turn). */
static void clip_keeping_luma(const float *w, float *r, float *g, float *b) {
    float p[3] = {*r, *g, *b};
    float target = luma3(w, p[0], p[1], p[2]);
    for (int ch = 0; ch < 3; ch++) p[ch] = clip255(p[ch]);
    for (int pass = 0; pass < 2; pass++) {
        float lost = target - luma3(w, p[0], p[1], p[2]);
        float room[3];
        for (int ch = 0; ch < 3; ch++) room[ch] = lost > 0.0f ? (float)(p[ch] < 255.0f) : (float)(p[ch] > 0.0f);
        float share = luma3(w, room[0], room[1], room[2]);
        if (share < 1e-6f) share = 1e-6f;
        for (int ch = 0; ch < 3; ch++) p[ch] = clip255(p[ch] + room[ch] * lost / share);
    }
    *r = p[0], *g = p[1], *b = p[2];
}

/* ``round_keeping_luma`` of a block's pixels (channel planes, each within [0, 255]) into (64, 3) bytes, without
   branches so that it vectorises: to nearest where that moves a pixel's luma by at most the tolerance, else each
   channel down or up so that the luma is nearest its unrounded value. The k-th luma step rounds R up when bit 1 of
   k is set, G bit 2, B bit 0 (``cpu_path._ROUND_UP``). */
INLINE static void round_keeping_luma(const Job *job, const float *r, const float *g, const float *b, uint8_t *q) {
    const float w0 = job->weights[0], w1 = job->weights[1], w2 = job->weights[2], tol = job->tolerance;
    const float *m = job->midpoints;
    const float m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3], m4 = m[4], m5 = m[5], m6 = m[6];
    int32_t qr[AREA], qg[AREA], qb[AREA];
    for (int k = 0; k < AREA; k++) {
        float nr = round_even(r[k]), ng = round_even(g[k]), nb = round_even(b[k]);
        float lr = (float)(int32_t)r[k], lg = (float)(int32_t)g[k], lb = (float)(int32_t)b[k]; /* floor: x >= 0 */
        float moved = (nr - r[k]) * w0 + (ng - g[k]) * w1 + (nb - b[k]) * w2;
        int32_t far = (moved > tol) | (moved < -tol);
        float added = (r[k] - lr) * w0 + (g[k] - lg) * w1 + (b[k] - lb) * w2;
        int32_t step = (added > m0) + (added > m1) + (added > m2) + (added > m3) + (added > m4) + (added > m5) +
                       (added > m6);
        int32_t ur = far ? (step >> 1) & 1 : nr > lr;
        int32_t ug = far ? (step >> 2) & 1 : ng > lg;
        int32_t ub = far ? step & 1 : nb > lb;
        int32_t vr = (int32_t)lr + ur, vg = (int32_t)lg + ug, vb = (int32_t)lb + ub;
        qr[k] = vr > 255 ? 255 : vr; /* a channel at 255 stays there */
        qg[k] = vg > 255 ? 255 : vg;
        qb[k] = vb > 255 ? 255 : vb;
    }
    for (int k = 0; k < AREA; k++) q[3 * k] = (uint8_t)qr[k], q[3 * k + 1] = (uint8_t)qg[k], q[3 * k + 2] = (uint8_t)qb[k];
}

/* QIM: the coefficient moved (by alpha of the way) to the nearest point of its bit's dithered lattice. */
static inline float qim_write(float c, int bit, float dither, float step, float alpha) {
    float offset = (dither + 0.5f * (float)bit) * step;
    float target = round_even((c - offset) / step) * step + offset;
    return c + alpha * (target - c);
}

/* The hard reading of a coefficient: 1 where its lattice phase lies in (0.25, 0.75). */
static inline int hard_bit(float c, float dither, float step) {
    float e = c / step - dither;
    e -= floor_small(e);
    return e > 0.25f && e < 0.75f;
}

INLINE static void write_block(const Job *job, const float *dt, Py_ssize_t by, Py_ssize_t bx) {
    const Py_ssize_t n = job->n, g = n / BLOCK, b = by * g + bx, t = job->t;
    const uint8_t *bits = job->bits + b * t;
    const float *dither = job->dither + b * t, *w = job->weights;
    float r[AREA], gr[AREA], bl[AREA], y[AREA], c[AREA];
    for (int i = 0; i < BLOCK; i++) {
        const float *row = job->cover + ((by * BLOCK + i) * n + bx * BLOCK) * 3;
        for (int j = 0; j < BLOCK; j++)
            r[i * BLOCK + j] = row[3 * j], gr[i * BLOCK + j] = row[3 * j + 1], bl[i * BLOCK + j] = row[3 * j + 2];
    }
    const int on = job->active[b] != 0;
    if (on) {
        float delta[AREA] = {0}, change[AREA];
        for (int k = 0; k < AREA; k++) y[k] = luma3(w, r[k], gr[k], bl[k]);
        dct8(job->dct, dt, y, c);
        for (Py_ssize_t s = 0; s < t; s++) {
            float v = c[job->pos[s]];
            delta[job->pos[s]] = qim_write(v, bits[s], dither[s], job->step[s], job->alpha) - v;
        }
        idct8(job->dct, dt, delta, change);
        for (int k = 0; k < AREA; k++) r[k] += change[k], gr[k] += change[k], bl[k] += change[k];
    }
    float lo = 0.0f, hi = 255.0f;
    for (int k = 0; k < AREA; k++) {
        float a = r[k] < gr[k] ? r[k] : gr[k], z = r[k] > gr[k] ? r[k] : gr[k];
        a = a < bl[k] ? a : bl[k], z = z > bl[k] ? z : bl[k];
        lo = a < lo ? a : lo, hi = z > hi ? z : hi;
    }
    if (lo < 0.0f || hi > 255.0f)  /* rare: a block that meets black or white */
        for (int k = 0; k < AREA; k++)
            if (r[k] < 0.0f || r[k] > 255.0f || gr[k] < 0.0f || gr[k] > 255.0f || bl[k] < 0.0f || bl[k] > 255.0f)
                clip_keeping_luma(w, &r[k], &gr[k], &bl[k]);
    uint8_t stored[AREA * 3];
    round_keeping_luma(job, r, gr, bl, stored);
    for (int i = 0; i < BLOCK; i++)
        memcpy(job->out + ((by * BLOCK + i) * n + bx * BLOCK) * 3, stored + i * BLOCK * 3, BLOCK * 3);
    job->wrong[b] = 0;
    if (on) { /* read the block as stored: the rounding or the clip may have flipped a reading */
        for (int k = 0; k < AREA; k++)
            y[k] = luma3(w, (float)stored[3 * k], (float)stored[3 * k + 1], (float)stored[3 * k + 2]);
        dct8(job->dct, dt, y, c);
        int flipped = 0;
        for (Py_ssize_t s = 0; s < t; s++) flipped |= hard_bit(c[job->pos[s]], dither[s], job->step[s]) != bits[s];
        job->wrong[b] = (uint8_t)flipped;
    }
}

/* Every block of the image, in rows. */
MULTIVERSION static void write_blocks(const Job *job, const float *dt) {
    const Py_ssize_t g = job->n / BLOCK;
    for (Py_ssize_t by = 0; by < g; by++)
        for (Py_ssize_t bx = 0; bx < g; bx++) write_block(job, dt, by, bx);
}

/* A C-contiguous buffer of exactly ``count`` items of ``itemsize`` bytes, else a ValueError naming it. */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, Py_ssize_t count,
                      const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) { /* say which argument, and what it must be */
        PyObject *type, *value, *trace;
        PyErr_Fetch(&type, &value, &trace);
        PyErr_Format(PyExc_ValueError, "%s: needs a C-contiguous%s buffer (%S)", name, writable ? " writable" : "",
                     value ? value : Py_None);
        Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(trace);
        return -1;
    }
    if (view->itemsize != itemsize || view->len != itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd bytes in items of %zd", name, count,
                     itemsize, view->len, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define NBUF 11

static PyObject *write_stored(PyObject *self, PyObject *args) {
    PyObject *obj[NBUF];
    Py_ssize_t n, t;
    float alpha, tolerance;
    if (!PyArg_ParseTuple(args, "nnOOOOOOOOOOOff:write_stored", &n, &t, &obj[0], &obj[1], &obj[2], &obj[3], &obj[4],
                          &obj[5], &obj[6], &obj[7], &obj[8], &obj[9], &obj[10], &alpha, &tolerance))
        return NULL;
    if (n <= 0 || n % BLOCK || t <= 0 || t > AREA) {
        PyErr_Format(PyExc_ValueError, "need a grid of whole %d px blocks and 1..64 slots a block, got n=%zd, t=%zd",
                     BLOCK, n, t);
        return NULL;
    }
    const Py_ssize_t g = n / BLOCK;
    static const char *names[NBUF] = {"cover", "out", "wrong", "active", "pos", "bits",
                                      "dither", "step", "dct", "weights", "midpoints"};
    const int writable[NBUF] = {0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    const Py_ssize_t sizes[NBUF] = {4, 1, 1, 1, 4, 1, 4, 4, 4, 4, 4};
    const Py_ssize_t counts[NBUF] = {n * n * 3, n * n * 3, g * g, g * g, t, g * g * t, g * g * t, t, AREA, 3, MIDPOINTS};
    Py_buffer view[NBUF];
    int got = 0;
    for (; got < NBUF; got++)
        if (get_buffer(obj[got], &view[got], writable[got], sizes[got], counts[got], names[got]) < 0) break;
    PyObject *result = NULL;
    if (got == NBUF) {
        Job job = {view[0].buf, view[1].buf, view[2].buf, view[3].buf, view[4].buf, view[5].buf,
                   view[6].buf, view[7].buf, view[8].buf, view[9].buf, view[10].buf, n, t, alpha, tolerance};
        int bad = 0;
        for (Py_ssize_t s = 0; s < t; s++) bad |= job.pos[s] < 1 || job.pos[s] >= AREA;
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "pos: AC coefficient positions are 1..63");
        } else {
            Py_BEGIN_ALLOW_THREADS;
            float dt[AREA];
            for (int i = 0; i < BLOCK; i++)
                for (int j = 0; j < BLOCK; j++) dt[i * BLOCK + j] = job.dct[j * BLOCK + i];
            write_blocks(&job, dt);
            Py_END_ALLOW_THREADS;
            result = Py_NewRef(Py_None);
        }
    }
    for (int k = 0; k < got; k++) PyBuffer_Release(&view[k]);
    return result;
}

/* The blocks that carry the code, ``CpuPath.active_blocks``: a block of luma (the weights' sum of R, G and B) whose
   standard deviation is flat_std or more. In float64, where NumPy's path runs float32 sums in its own order: the two
   differ only for a block whose deviation lies within float32 rounding of flat_std. */
MULTIVERSION static void carrying_blocks(const float *cover, uint8_t *out, Py_ssize_t count, Py_ssize_t n,
                                         const float *w, double flat_std) {
    const Py_ssize_t g = n / BLOCK;
    for (Py_ssize_t i = 0; i < count; i++) {
        const float *image = cover + i * n * n * 3;
        for (Py_ssize_t by = 0; by < g; by++) {
            for (Py_ssize_t bx = 0; bx < g; bx++) {
                double y[AREA], sum = 0.0, squares = 0.0;
                for (int r = 0; r < BLOCK; r++) {
                    const float *px = image + ((by * BLOCK + r) * n + bx * BLOCK) * 3;
                    for (int c = 0; c < BLOCK; c++) {
                        y[r * BLOCK + c] = (double)w[0] * px[3 * c] + (double)w[1] * px[3 * c + 1] +
                                           (double)w[2] * px[3 * c + 2];
                        sum += y[r * BLOCK + c];
                    }
                }
                const double mean = sum / AREA;
                for (int k = 0; k < AREA; k++) squares += (y[k] - mean) * (y[k] - mean);
                out[(i * g + by) * g + bx] = !(sqrt(squares / AREA) < flat_std);
            }
        }
    }
}

static PyObject *active_blocks(PyObject *self, PyObject *args) {
    PyObject *obj[3];
    Py_ssize_t count, n;
    double flat_std;
    if (!PyArg_ParseTuple(args, "nnOOOd:active_blocks", &count, &n, &obj[0], &obj[1], &obj[2], &flat_std)) return NULL;
    if (n <= 0 || n % BLOCK || count < 0) {
        PyErr_Format(PyExc_ValueError, "need a grid of whole %d px blocks, got n=%zd", BLOCK, n);
        return NULL;
    }
    const Py_ssize_t g = n / BLOCK;
    static const char *names[3] = {"cover", "out", "weights"};
    const int writable[3] = {0, 1, 0};
    const Py_ssize_t sizes[3] = {4, 1, 4}, counts[3] = {count * n * n * 3, count * g * g, 3};
    Py_buffer view[3];
    int got = 0;
    for (; got < 3; got++)
        if (get_buffer(obj[got], &view[got], writable[got], sizes[got], counts[got], names[got]) < 0) break;
    PyObject *result = NULL;
    if (got == 3) {
        Py_BEGIN_ALLOW_THREADS;
        carrying_blocks(view[0].buf, view[1].buf, count, n, view[2].buf, flat_std);
        Py_END_ALLOW_THREADS;
        result = Py_NewRef(Py_None);
    }
    for (int k = 0; k < got; k++) PyBuffer_Release(&view[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"active_blocks", active_blocks, METH_VARARGS,
     "active_blocks(count, n, cover, out, weights, flat_std)\n\nThe carrying blocks of ``count`` covers of n x n "
     "pixels (``cpu_path.CpuPath.active_blocks``); the GIL is released while it runs."},
    {"write_stored", write_stored, METH_VARARGS,
     "write_stored(n, t, cover, out, wrong, active, pos, bits, dither, step, dct, weights, midpoints, alpha, "
     "tolerance)\n\nWrite and store one stego of n x n pixels (``cpu_path.BlockWriter.write_stored`` says what each "
     "buffer holds); the GIL is released while it runs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_blockwrite",
                                    "The digital layer's write and storage of a stego in C.", -1, methods};

PyMODINIT_FUNC PyInit__blockwrite(void) { return PyModule_Create(&module); }
