/* Belief propagation (scaled min-sum, flooding schedule) for the digital layer's LDPC codes, in C
   (``channel.ChannelCode.decode`` calls it where it is built).

   The same decoder as the ``ldpc`` package's ``BpDecoder`` with ``bp_method="minimum_sum"``, the parallel schedule
   and syndrome input, operation for operation in float64, so that both give the same bits
   (``tests/test_digital_minsum.py`` checks it on frames that converge and frames that do not):
   - the channel's flip probabilities p give each bit the prior log((1 - p) / p), which every edge of its column
     carries to its check first;
   - a check sends each of its bits the smallest magnitude among its other bits' messages, times the scaling, with
     the sign that makes the check's parity (the syndrome's bit) hold;
   - a bit's total is its prior plus its checks' messages, added in the order of its rows; a total <= 0 reads 1;
   - a bit's message to a check is its prior and its other checks' messages: those above added in order, then
     those below added from the bottom up, and the two sums added, as ``ldpc`` adds them;
   - the decode stops when the bits read give the syndrome (converged), or after ``max_iter`` rounds.
   A round is two passes over flat arrays where ``ldpc`` walks a linked list of edges: the rows' pass reads the
   bits' messages in row order and keeps each check's two smallest magnitudes (the same "smallest of the others"
   as ``ldpc``'s scans from both ends); the columns' pass rebuilds each check's messages from those and writes the
   bits' new messages to their rows' places. The selects on message values are done on bits, not branches: the
   values come in random order, and a mispredicted branch waits on its load (2.3 times the speed of ``ldpc``'s
   round, docs/model.md). Each call has its own scratch, and the GIL is released while the frames decode. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_multiversion.h" /* INLINE */

/* A check's state after its bits' messages: the two smallest magnitudes, where the smallest is in row order (the
   first among equals; -1 for none under DBL_MAX) and the parity of the syndrome's bit and the messages <= 0. */
typedef struct {
    double min1, min2;
    int32_t at, parity;
} Check;

typedef struct {
    Py_ssize_t n, m, k, edges, max_degree;
    const int32_t *col_ptr;  /* (n + 1,) column v's edges are col_ptr[v] .. col_ptr[v + 1] - 1, rows ascending */
    const int32_t *edge_row; /* (edges,) each edge's row */
    const int32_t *row_ptr;  /* (m + 1,) row r's places are row_ptr[r] .. row_ptr[r + 1] - 1, columns ascending */
    const int32_t *place;    /* (edges,) each edge's place in row order */
    double alpha;
    int max_iter;
} Code;

typedef struct {
    Check *check;      /* (m,) */
    double *to_check;  /* (edges,) the bits' messages to their checks, in row order */
    uint8_t *negative; /* (edges,) in column order: 1 where the edge's message to its check is <= 0 */
    double *prior, *from_checks, *above;
    uint8_t *syndrome, *candidate, *error;
} Scratch;

INLINE static uint64_t bits_of(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

INLINE static double double_of(uint64_t b) {
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* Each check's state from its bits' messages, row by row (``ldpc``'s check update, kept as two minima). */
static void rows_pass(const Code *c, Scratch *s) {
    for (Py_ssize_t r = 0; r < c->m; r++) {
        uint64_t min1 = bits_of(DBL_MAX), min2 = min1; /* magnitudes compare as doubles, are selected as bits */
        int32_t at = -1, parity = s->syndrome[r];
        for (int32_t e = c->row_ptr[r]; e < c->row_ptr[r + 1]; e++) {
            const double v = s->to_check[e], a = fabs(v);
            parity ^= v <= 0;
            const uint64_t below1 = -(uint64_t)(a < double_of(min1)), below2 = -(uint64_t)(a < double_of(min2));
            min2 = (min1 & below1) | (~below1 & ((bits_of(a) & below2) | (min2 & ~below2)));
            min1 = (bits_of(a) & below1) | (min1 & ~below1);
            at = (int32_t)(((uint32_t)e & (uint32_t)below1) | ((uint32_t)at & ~(uint32_t)below1));
        }
        s->check[r] = (Check){double_of(min1), double_of(min2), at, parity};
    }
}

/* Column by column: each bit's messages from its checks, its total and reading (and the syndrome of the
   readings), and its messages to its checks for the next round. */
static void cols_pass(const Code *c, Scratch *s) {
    memset(s->candidate, 0, (size_t)c->m);
    for (Py_ssize_t v = 0; v < c->n; v++) {
        const int32_t first = c->col_ptr[v], d = c->col_ptr[v + 1] - first;
        const int32_t *rows = c->edge_row + first, *place = c->place + first;
        uint8_t *negative = s->negative + first;
        double *msg = s->from_checks, *above = s->above, total = s->prior[v];
        for (int32_t j = 0; j < d; j++) {
            const Check *check = s->check + rows[j];
            const uint64_t other = -(uint64_t)(check->at == place[j]); /* this bit gave the smallest */
            const double least = double_of((bits_of(check->min2) & other) | (bits_of(check->min1) & ~other));
            const uint64_t sign = (uint64_t)(check->parity ^ negative[j]) << 63;
            msg[j] = double_of(bits_of(least * c->alpha) ^ sign); /* the exact negation where the sign is set */
        }
        for (int32_t j = 0; j < d; j++) {
            above[j] = total;
            total += msg[j];
        }
        const uint8_t error = total <= 0;
        s->error[v] = error;
        for (int32_t j = 0; j < d; j++) s->candidate[rows[j]] ^= error;
        double below = 0.0;
        for (int32_t j = d - 1; j >= 0; j--) {
            const double out = above[j] + below;
            below += msg[j];
            negative[j] = out <= 0;
            s->to_check[place[j]] = out;
        }
    }
}

/* One frame: flip probabilities p (n,) and hard readings (n,) -> the message bits (k,); returns whether it
   converged. */
static int decode_frame(const Code *c, Scratch *s, const double *p, const uint8_t *hard, uint8_t *message,
                        int32_t *iterations) {
    memset(s->syndrome, 0, (size_t)c->m);
    for (Py_ssize_t v = 0; v < c->n; v++) {
        if (hard[v]) {
            for (int32_t e = c->col_ptr[v]; e < c->col_ptr[v + 1]; e++) s->syndrome[c->edge_row[e]] ^= 1;
        }
    }
    int any = 0;
    for (Py_ssize_t r = 0; r < c->m; r++) any |= s->syndrome[r];
    int converged = !any; /* a zero syndrome: no flips, as ``ldpc`` answers it without decoding */
    *iterations = 0;
    memset(s->error, 0, (size_t)c->n);
    if (any) {
        for (Py_ssize_t v = 0; v < c->n; v++) { /* every edge's first message is its bit's prior */
            s->prior[v] = log((1 - p[v]) / p[v]);
            for (int32_t e = c->col_ptr[v]; e < c->col_ptr[v + 1]; e++) {
                s->negative[e] = s->prior[v] <= 0;
                s->to_check[c->place[e]] = s->prior[v];
            }
        }
        for (int it = 1; it <= c->max_iter && !converged; it++) {
            rows_pass(c, s);
            cols_pass(c, s);
            converged = memcmp(s->candidate, s->syndrome, (size_t)c->m) == 0;
            *iterations = it;
        }
    }
    for (Py_ssize_t v = 0; v < c->k; v++) message[v] = hard[v] ^ s->error[v];
    return converged;
}

/* The structure indexes only inside itself: checked once a call, so that no index reads out of bounds. Returns the
   largest column degree, or -1. */
static Py_ssize_t check_code(const Code *c) {
    if (c->col_ptr[0] != 0 || c->col_ptr[c->n] != c->edges || c->row_ptr[0] != 0 || c->row_ptr[c->m] != c->edges)
        return -1;
    Py_ssize_t widest = 0;
    for (Py_ssize_t v = 0; v < c->n; v++) {
        const Py_ssize_t d = (Py_ssize_t)c->col_ptr[v + 1] - c->col_ptr[v];
        if (d < 0) return -1;
        widest = d > widest ? d : widest;
    }
    for (Py_ssize_t r = 0; r < c->m; r++)
        if (c->row_ptr[r + 1] < c->row_ptr[r]) return -1;
    for (Py_ssize_t e = 0; e < c->edges; e++)
        if (c->edge_row[e] < 0 || c->edge_row[e] >= c->m || c->place[e] < 0 || c->place[e] >= c->edges) return -1;
    return widest;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    Code c;
    Py_buffer col_ptr, edge_row, row_ptr, place, p, hard, message, converged, iterations;
    if (!PyArg_ParseTuple(args, "nnny*y*y*y*diy*y*w*w*w*:decode", &c.n, &c.m, &c.k, &col_ptr, &edge_row, &row_ptr,
                          &place, &c.alpha, &c.max_iter, &p, &hard, &message, &converged, &iterations))
        return NULL;
    PyObject *result = NULL;
    c.edges = edge_row.len / (Py_ssize_t)sizeof(int32_t);
    const Py_ssize_t frames = c.n > 0 ? hard.len / c.n : 0;
    if (c.n <= 0 || c.m <= 0 || c.k <= 0 || c.k > c.n || c.n > INT32_MAX ||
        col_ptr.len != (c.n + 1) * (Py_ssize_t)sizeof(int32_t) ||
        row_ptr.len != (c.m + 1) * (Py_ssize_t)sizeof(int32_t) ||
        edge_row.len != c.edges * (Py_ssize_t)sizeof(int32_t) || place.len != edge_row.len ||
        hard.len != frames * c.n || p.len != frames * c.n * (Py_ssize_t)sizeof(double) ||
        message.len != frames * c.k || converged.len != frames ||
        iterations.len != frames * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "decode: buffer sizes do not match the code and the frames");
        goto done;
    }
    c.col_ptr = col_ptr.buf, c.edge_row = edge_row.buf, c.row_ptr = row_ptr.buf, c.place = place.buf;
    c.max_degree = check_code(&c);
    if (c.max_degree < 0) {
        PyErr_SetString(PyExc_ValueError, "decode: the code's structure indexes outside itself");
        goto done;
    }
    Scratch s;
    const size_t widest = (size_t)(c.max_degree ? c.max_degree : 1), edges = (size_t)(c.edges ? c.edges : 1);
    s.check = malloc(sizeof(Check) * (size_t)c.m);
    s.to_check = malloc(sizeof(double) * edges), s.negative = malloc(edges);
    s.prior = malloc(sizeof(double) * (size_t)c.n);
    s.from_checks = malloc(sizeof(double) * widest), s.above = malloc(sizeof(double) * widest);
    s.syndrome = malloc((size_t)c.m), s.candidate = malloc((size_t)c.m), s.error = malloc((size_t)c.n);
    if (!s.check || !s.to_check || !s.negative || !s.prior || !s.from_checks || !s.above || !s.syndrome ||
        !s.candidate || !s.error) {
        PyErr_NoMemory();
    } else {
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t f = 0; f < frames; f++) {
            ((uint8_t *)converged.buf)[f] =
                (uint8_t)decode_frame(&c, &s, (const double *)p.buf + f * c.n, (const uint8_t *)hard.buf + f * c.n,
                                      (uint8_t *)message.buf + f * c.k, (int32_t *)iterations.buf + f);
        }
        Py_END_ALLOW_THREADS;
        result = Py_None;
        Py_INCREF(result);
    }
    free(s.check), free(s.to_check), free(s.negative), free(s.prior), free(s.from_checks), free(s.above);
    free(s.syndrome), free(s.candidate), free(s.error);
done:
    PyBuffer_Release(&col_ptr), PyBuffer_Release(&edge_row), PyBuffer_Release(&row_ptr);
    PyBuffer_Release(&place), PyBuffer_Release(&p), PyBuffer_Release(&hard);
    PyBuffer_Release(&message), PyBuffer_Release(&converged), PyBuffer_Release(&iterations);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(n, m, k, col_ptr, edge_row, row_ptr, place, alpha, max_iter, p, hard, message, converged, "
     "iterations)\n\nDecode B frames of an (n, k) code with m = n - k checks (``channel.ChannelCode`` says what each "
     "buffer holds); the GIL is released while they decode."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_minsum",
                                    "Scaled min-sum belief propagation for the digital layer's LDPC codes.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__minsum(void) { return PyModule_Create(&module); }
