/* PNG scanline unfiltering in C, for the decoder's fast path of 8-bit RGB PNGs (``decode.read_png_rgb8``).

   The stream is inflated by ISA-L (or zlib) in Python; this undoes each row's filter (PNG specification, section
   9: None, Sub, Up, Average, Paeth) into the image's rows, with the GIL released. Everything else about the file
   (its chunks, their CRCs, the header) is read and checked by the caller. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The Paeth predictor of left a, above b and upper-left c (section 9.4), without branches: p - a = b - c,
   p - b = a - c, p - c = a + b - 2c. */
static inline int paeth(int a, int b, int c) {
    const int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    const int not_a = (pa > pb) | (pa > pc), c_over_b = pb > pc; /* masks, not branches: the choice is data */
    const int bc = b ^ ((b ^ c) & -c_over_b);
    return a ^ ((a ^ bc) & -not_a);
}

/* Row ``raw`` (its filter byte first) onto ``out``; ``prev``: the row above as unfiltered, or NULL for the first.
   Returns 0, or -1 for an unknown filter type. */
static int unfilter_row(const uint8_t *raw, uint8_t *out, const uint8_t *prev, Py_ssize_t n, int bpp) {
    const uint8_t kind = raw[0];
    const uint8_t *x = raw + 1;
    Py_ssize_t i;
    switch (kind) {
    case 0:
        memcpy(out, x, n);
        return 0;
    case 1: /* Sub: the byte bpp to the left */
        for (i = 0; i < bpp && i < n; i++) out[i] = x[i];
        for (; i < n; i++) out[i] = (uint8_t)(x[i] + out[i - bpp]);
        return 0;
    case 2: /* Up: the byte above */
        if (!prev) {
            memcpy(out, x, n);
        } else {
            for (i = 0; i < n; i++) out[i] = (uint8_t)(x[i] + prev[i]);
        }
        return 0;
    case 3: /* Average of left and above */
        if (!prev) {
            for (i = 0; i < bpp && i < n; i++) out[i] = x[i];
            for (; i < n; i++) out[i] = (uint8_t)(x[i] + (out[i - bpp] >> 1));
            return 0;
        }
        for (i = 0; i < bpp && i < n; i++) out[i] = (uint8_t)(x[i] + (prev[i] >> 1));
        for (; i < n; i++) out[i] = (uint8_t)(x[i] + ((out[i - bpp] + prev[i]) >> 1));
        return 0;
    case 4: /* Paeth: on the first row, left alone (above and upper-left are 0) */
        if (!prev) {
            for (i = 0; i < bpp && i < n; i++) out[i] = x[i];
            for (; i < n; i++) out[i] = (uint8_t)(x[i] + out[i - bpp]);
            return 0;
        }
        for (i = 0; i < bpp && i < n; i++) out[i] = (uint8_t)(x[i] + prev[i]); /* left and upper-left are 0 */
        if (bpp == 3) { /* RGB: a pixel's three chains side by side, the left and upper-left pixels in registers */
            int a0 = out[0], a1 = out[1], a2 = out[2], c0 = prev[0], c1 = prev[1], c2 = prev[2];
            for (; i + 3 <= n; i += 3) {
                const int b0 = prev[i], b1 = prev[i + 1], b2 = prev[i + 2];
                a0 = (x[i] + paeth(a0, b0, c0)) & 0xff;
                a1 = (x[i + 1] + paeth(a1, b1, c1)) & 0xff;
                a2 = (x[i + 2] + paeth(a2, b2, c2)) & 0xff;
                out[i] = (uint8_t)a0, out[i + 1] = (uint8_t)a1, out[i + 2] = (uint8_t)a2;
                c0 = b0, c1 = b1, c2 = b2;
            }
        }
        for (; i < n; i++) out[i] = (uint8_t)(x[i] + paeth(out[i - bpp], prev[i], prev[i - bpp]));
        return 0;
    default:
        return -1;
    }
}

static PyObject *unfilter(PyObject *self, PyObject *args) {
    Py_buffer raw, out;
    Py_ssize_t rows, width;
    int bpp;
    if (!PyArg_ParseTuple(args, "y*w*nni:unfilter", &raw, &out, &rows, &width, &bpp)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = width * bpp;
    if (rows < 1 || width < 1 || bpp < 1 || bpp > 8) {
        PyErr_Format(PyExc_ValueError, "need rows, width >= 1 and 1..8 bytes a pixel, got %zd, %zd, %d", rows, width,
                     bpp);
    } else if (raw.len != rows * (n + 1) || out.len != rows * n) {
        PyErr_Format(PyExc_ValueError, "image data: expected %zd bytes (%zd rows of %zd and a filter byte) into %zd, got"
                     " %zd into %zd", rows * (n + 1), rows, n, rows * n, raw.len, out.len);
    } else {
        const uint8_t *src = raw.buf;
        uint8_t *dst = out.buf;
        Py_ssize_t bad = -1;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t r = 0; r < rows; r++)
            if (unfilter_row(src + r * (n + 1), dst + r * n, r ? dst + (r - 1) * n : NULL, n, bpp) < 0) {
                bad = r;
                break;
            }
        Py_END_ALLOW_THREADS;
        if (bad >= 0)
            PyErr_Format(PyExc_ValueError, "row %zd: unknown PNG filter type %d", bad, src[bad * (n + 1)]);
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&raw), PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"unfilter", unfilter, METH_VARARGS,
     "unfilter(raw, out, rows, width, bpp)\n\nUndo the PNG filters of ``rows`` inflated scanlines ``raw`` (each a "
     "filter byte and width * bpp bytes) into the C-contiguous writable ``out`` (rows * width * bpp bytes); the GIL "
     "is released while it runs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_png", "PNG scanline unfiltering in C.", -1, methods};

PyMODINIT_FUNC PyInit__png(void) { return PyModule_Create(&module); }
