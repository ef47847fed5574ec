/*
 * Record walkers for pcap and pcapng.
 *
 * Finding where each record starts is the one inherently sequential step of
 * reading a capture file (every record's length says where the next begins);
 * in Python it costs ~0.5 us a packet, more than the rest of the feature path.
 * These walkers do only that step and leave all field extraction to numpy, so
 * the C surface stays small and bounds-checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { WALK_NEED_MORE = 0, WALK_FULL = 1, WALK_CORRUPT = 2, WALK_SECTION = 3 };

static uint32_t rd32(const unsigned char *p, int swapped)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

static int get_out(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->itemsize != itemsize && view->len % itemsize) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "output buffer has the wrong item size");
        return -1;
    }
    return 0;
}

/*
 * walk_pcap(buf, pos, end, swapped, max_caplen, offsets_out) -> (n, pos, status)
 * Stores the offset of each whole record header found in buf[pos:end].
 */
static PyObject *walk_pcap(PyObject *self, PyObject *args)
{
    Py_buffer in, out;
    Py_ssize_t pos, end;
    int swapped;
    unsigned long max_caplen;
    PyObject *out_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnikO", &in, &pos, &end, &swapped, &max_caplen, &out_obj))
        return NULL;
    if (get_out(out_obj, &out, sizeof(int64_t)) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    if (end > in.len)
        end = in.len;
    const unsigned char *b = in.buf;
    int64_t *offs = out.buf;
    Py_ssize_t cap = out.len / (Py_ssize_t)sizeof(int64_t), n = 0;
    int status = WALK_NEED_MORE;
    Py_BEGIN_ALLOW_THREADS
    while (pos >= 0 && pos + 16 <= end) {
        uint32_t caplen = rd32(b + pos + 8, swapped);
        if (caplen > max_caplen) {
            status = WALK_CORRUPT;
            break;
        }
        if (pos + 16 + (Py_ssize_t)caplen > end)
            break;
        if (n == cap) {
            status = WALK_FULL;
            break;
        }
        offs[n++] = pos;
        pos += 16 + (Py_ssize_t)caplen;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return Py_BuildValue("nni", n, pos, status);
}

/*
 * walk_pcapng(buf, pos, end, swapped, max_len, offsets_out, types_out) -> (n, pos, status)
 * Stores offset and type of each whole block; stops at a Section Header Block,
 * which the caller parses, because a new section may change the byte order.
 * A block longer than max_len is CORRUPT at once: waiting for its bytes would
 * let one length field make the caller buffer up to 4 GiB.
 */
static PyObject *walk_pcapng(PyObject *self, PyObject *args)
{
    Py_buffer in, out_off, out_type;
    Py_ssize_t pos, end;
    int swapped;
    unsigned long max_len;
    PyObject *off_obj, *type_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnikOO", &in, &pos, &end, &swapped, &max_len, &off_obj, &type_obj))
        return NULL;
    if (get_out(off_obj, &out_off, sizeof(int64_t)) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    if (get_out(type_obj, &out_type, sizeof(uint32_t)) < 0) {
        PyBuffer_Release(&in);
        PyBuffer_Release(&out_off);
        return NULL;
    }
    if (end > in.len)
        end = in.len;
    const unsigned char *b = in.buf;
    int64_t *offs = out_off.buf;
    uint32_t *types = out_type.buf;
    Py_ssize_t cap = out_off.len / (Py_ssize_t)sizeof(int64_t), n = 0;
    Py_ssize_t cap2 = out_type.len / (Py_ssize_t)sizeof(uint32_t);
    if (cap2 < cap)
        cap = cap2;
    int status = WALK_NEED_MORE;
    Py_BEGIN_ALLOW_THREADS
    while (pos >= 0 && pos + 12 <= end) {
        uint32_t type, len;
        memcpy(&type, b + pos, 4);
        if (type == 0x0A0D0D0AU) {
            status = WALK_SECTION;
            break;
        }
        if (swapped)
            type = __builtin_bswap32(type);
        len = rd32(b + pos + 4, swapped);
        if (len < 12 || (len & 3U) || len > max_len) {
            status = WALK_CORRUPT;
            break;
        }
        if (pos + (Py_ssize_t)len > end)
            break;
        if (rd32(b + pos + len - 4, swapped) != len) {
            status = WALK_CORRUPT;
            break;
        }
        if (n == cap) {
            status = WALK_FULL;
            break;
        }
        offs[n] = pos;
        types[n] = type;
        n++;
        pos += len;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&out_off);
    PyBuffer_Release(&out_type);
    return Py_BuildValue("nni", n, pos, status);
}

static PyMethodDef methods[] = {
    {"walk_pcap", walk_pcap, METH_VARARGS,
     "walk_pcap(buf, pos, end, swapped, max_caplen, offsets_out) -> (n, pos, status)"},
    {"walk_pcapng", walk_pcapng, METH_VARARGS,
     "walk_pcapng(buf, pos, end, swapped, max_len, offsets_out, types_out) -> (n, pos, status)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "Sequential record walkers for capture files.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__walk(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyModule_AddIntConstant(m, "NEED_MORE", WALK_NEED_MORE);
    PyModule_AddIntConstant(m, "FULL", WALK_FULL);
    PyModule_AddIntConstant(m, "CORRUPT", WALK_CORRUPT);
    PyModule_AddIntConstant(m, "SECTION", WALK_SECTION);
    return m;
}
