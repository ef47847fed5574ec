/*
 * Per-flow integer statistics for one second, in one pass over the packets.
 *
 * numpy needs a strided gather from the 71-byte packet records plus a
 * reduceat for every statistic; here each packet record is read once.  Only
 * integer sums are computed (lengths, TTLs, windows, flag counts, byte
 * counts): they are exact, so the floats derived from them in Python are the
 * same bits numpy's own reductions gave.  Float sums (inter-arrival times)
 * stay in numpy, whose pairwise summation order this code does not imitate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "packet records are little-endian; this kernel reads them natively"
#endif

enum {
    C_CNT, C_NFWD, C_BYTES, C_BYTES_FWD, C_LEN_SUM, C_LEN_SQ, C_LEN_MIN, C_LEN_MAX,
    C_TTL_SUM, C_TTL_MIN, C_TTL_MAX, C_WIN_SUM, C_WIN_MIN, C_WIN_MAX,
    C_FLAG0, C_LAST_TS = C_FLAG0 + 9, N_COLS
};

static int get(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *name)
{
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (itemsize && view->len % itemsize) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: buffer size is not a multiple of %zd", name, itemsize);
        return -1;
    }
    return 0;
}

/*
 * group_stats(records, itemsize, off_ts, off_wire, off_iplen, off_ttl, off_flags, off_win,
 *             order, starts, src_low, init_low, out, ts_out)
 *
 * order (int64[N]) lists record indices group by group; group g is
 * order[starts[g]:starts[g+1]].  src_low (uint8 per record) and init_low
 * (uint8 per group) decide the direction.  Writes out (int64[G, N_COLS]) and
 * ts_out (int64[N]: the timestamps in group order).
 */
static PyObject *group_stats(PyObject *self, PyObject *args)
{
    PyObject *rec_o, *order_o, *starts_o, *low_o, *init_o, *out_o, *ts_o;
    Py_ssize_t isz, o_ts, o_wire, o_len, o_ttl, o_flags, o_win;
    Py_buffer rec, order, starts, low, init, out, tsb;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnnnnnnOOOOOO", &rec_o, &isz, &o_ts, &o_wire, &o_len, &o_ttl, &o_flags,
                          &o_win, &order_o, &starts_o, &low_o, &init_o, &out_o, &ts_o))
        return NULL;
    if (isz <= 0 || o_ts < 0 || o_ts + 8 > isz || o_wire < 0 || o_wire + 4 > isz || o_len < 0 ||
        o_len + 4 > isz || o_ttl < 0 || o_ttl >= isz || o_flags < 0 || o_flags + 2 > isz || o_win < 0 ||
        o_win + 2 > isz) {
        PyErr_SetString(PyExc_ValueError, "field offsets do not fit the record size");
        return NULL;
    }
    Py_buffer *views[] = {&rec, &order, &starts, &low, &init, &out, &tsb};
    PyObject *objs[] = {rec_o, order_o, starts_o, low_o, init_o, out_o, ts_o};
    const int writable[] = {0, 0, 0, 0, 0, 1, 1};
    const Py_ssize_t sizes[] = {isz, 8, 8, 1, 1, 8 * N_COLS, 8};
    const char *names[] = {"records", "order", "starts", "src_low", "init_low", "out", "ts_out"};
    int got = 0;
    for (; got < 7; got++)
        if (get(objs[got], views[got], writable[got], sizes[got], names[got]) < 0)
            goto fail;

    Py_ssize_t nrec = rec.len / isz, n = order.len / 8, g = starts.len / 8;
    const unsigned char *r = rec.buf;
    const int64_t *ord = order.buf, *st = starts.buf;
    const uint8_t *lo = low.buf, *il = init.buf;
    int64_t *o = out.buf, *ts_out = tsb.buf;
    if (low.len != nrec || init.len != g || out.len / (8 * N_COLS) != g || tsb.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "array lengths disagree");
        goto fail;
    }
    for (Py_ssize_t k = 0; k < g; k++) {
        if (st[k] < 0 || st[k] >= n || (k && st[k] <= st[k - 1]) || (!k && st[k] != 0)) {
            PyErr_SetString(PyExc_ValueError, "starts must rise strictly from 0 within order");
            goto fail;
        }
    }
    if (n && !g) {
        PyErr_SetString(PyExc_ValueError, "packets but no groups");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ord[i] < 0 || ord[i] >= nrec) {
            PyErr_SetString(PyExc_ValueError, "order indexes past the records");
            goto fail;
        }
    }

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < g; k++) {
        Py_ssize_t a = st[k], b = k + 1 < g ? st[k + 1] : n;
        int64_t *c = o + k * N_COLS;
        memset(c, 0, sizeof(int64_t) * N_COLS);
        c[C_LEN_MIN] = c[C_TTL_MIN] = c[C_WIN_MIN] = INT64_MAX;
        c[C_LEN_MAX] = c[C_TTL_MAX] = c[C_WIN_MAX] = c[C_LAST_TS] = INT64_MIN;
        for (Py_ssize_t i = a; i < b; i++) {
            const unsigned char *p = r + ord[i] * isz;
            int64_t ts;
            uint32_t wire, len;
            uint16_t flags, win;
            memcpy(&ts, p + o_ts, 8);
            memcpy(&wire, p + o_wire, 4);
            memcpy(&len, p + o_len, 4);
            memcpy(&flags, p + o_flags, 2);
            memcpy(&win, p + o_win, 2);
            int64_t ttl = p[o_ttl];
            int fwd = lo[ord[i]] == il[k];
            ts_out[i] = ts;
            c[C_CNT]++;
            c[C_NFWD] += fwd;
            c[C_BYTES] += wire;
            c[C_BYTES_FWD] += fwd ? wire : 0;
            c[C_LEN_SUM] += len;
            c[C_LEN_SQ] += (int64_t)len * len;
            if (len < c[C_LEN_MIN]) c[C_LEN_MIN] = len;
            if (len > c[C_LEN_MAX]) c[C_LEN_MAX] = len;
            c[C_TTL_SUM] += ttl;
            if (ttl < c[C_TTL_MIN]) c[C_TTL_MIN] = ttl;
            if (ttl > c[C_TTL_MAX]) c[C_TTL_MAX] = ttl;
            c[C_WIN_SUM] += win;
            if (win < c[C_WIN_MIN]) c[C_WIN_MIN] = win;
            if (win > c[C_WIN_MAX]) c[C_WIN_MAX] = win;
            for (int f = 0; f < 9; f++)
                c[C_FLAG0 + f] += (flags >> f) & 1;
            if (ts > c[C_LAST_TS]) c[C_LAST_TS] = ts;
        }
    }
    Py_END_ALLOW_THREADS
    for (int i = 0; i < got; i++)
        PyBuffer_Release(views[i]);
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < got; i++)
        PyBuffer_Release(views[i]);
    return NULL;
}

static PyMethodDef methods[] = {
    {"group_stats", group_stats, METH_VARARGS,
     "group_stats(records, itemsize, off_ts, off_wire, off_iplen, off_ttl, off_flags, off_win, "
     "order, starts, src_low, init_low, out, ts_out) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_flowstats", "Per-flow integer statistics in one pass.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__flowstats(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyModule_AddIntConstant(m, "N_COLS", N_COLS);
    return m;
}
