/*
 * The lattice search of aguri3's hhh.c (see search.py for the rules and the
 * order of the passes, docs/aggregation.md for why).
 *
 * The search recurses over (source prefix length, destination prefix length)
 * and at every step groups a few input flows by their masked keys; over
 * numpy that was ~10 small array operations and a Python frame per step,
 * 58% of the sensor's time.  Here a step is a sort of the group's members in
 * place.  Every group's members are a contiguous range of one permutation of
 * the input flows: a group's sub-groups are sub-ranges of its range, so
 * sorting a range by a longer prefix never disturbs a sibling, and memory is
 * the permutation, one scratch array and a stack of groups.
 *
 * The output is what the Python search gave, in the same order: groups are
 * visited in ascending key order, as its stable sort over the masked keys
 * listed them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { CRIT_COMBINATION = 0, CRIT_BYTE = 1, CRIT_PACKET = 2 };
enum { LOWER, LEFT, RIGHT, UPPER };
enum { MAX_WORDS = 2 };

typedef struct {
    Py_ssize_t a, e; /* members: perm[a:e), alive or not */
    uint64_t src[MAX_WORDS], dst[MAX_WORDS];
    int src_len, dst_len;
    int64_t bytes, pkts; /* residual */
} group_t;

/* Sort entries: a group's member and its masked key.  Keys of one word a side
   and at most 32 bits (IPv4, protocol/port) pack into one integer, as the
   Python search packed them for its 1-D sort; IPv6 keys compare word by word. */
typedef struct {
    uint64_t k;
    Py_ssize_t idx;
} narrow_t;

typedef struct {
    uint64_t k[2 * MAX_WORDS];
    Py_ssize_t idx;
} wide_t;

typedef struct {
    const uint64_t *keys; /* n x 2W: source words, then destination words */
    const int64_t *vol;   /* n x 2: bytes, packets */
    int words, bits, maxsize, crit, minsize, cutoff, cutoffres;
    int64_t tb, tp;
    int packed; /* keys pack into narrow_t */
    Py_ssize_t *perm;
    unsigned char *dead;
    void *scratch; /* 2N sort entries: the entries and the merge buffer */
    group_t *stack;
    Py_ssize_t nstack, capstack;
    int64_t *owner;     /* per input flow: the extracted group that took it, or -1 */
    uint64_t *out_keys; /* per extracted group: 2W words */
    int64_t *out_meta;  /* per extracted group: source length, destination length, bytes, packets */
    Py_ssize_t nout, capout;
} lattice_t;

static void mask(uint64_t *m, int words, int plen)
{
    for (int w = 0; w < words; w++) {
        int n = plen - 64 * w;
        m[w] = n <= 0 ? 0 : n >= 64 ? ~(uint64_t)0 : ~(uint64_t)0 << (64 - n);
    }
}

static int heavy(const lattice_t *L, const group_t *g)
{
    int ok;
    if (L->crit == CRIT_PACKET)
        ok = g->pkts >= L->tp;
    else if (L->crit == CRIT_BYTE)
        ok = g->bytes >= L->tb;
    else
        ok = g->pkts >= L->tp || g->bytes >= L->tb;
    return ok || (g->src_len == 0 && g->dst_len == 0);
}

static int narrow_less(const narrow_t *a, const narrow_t *b)
{
    return a->k < b->k;
}

static int wide_less(const wide_t *a, const wide_t *b)
{
    for (int i = 0; i < 2 * MAX_WORDS; i++)
        if (a->k[i] != b->k[i])
            return a->k[i] < b->k[i];
    return 0;
}

/*
 * A stable merge sort (insertion-sorted runs of 16, merged bottom up through
 * tmp).  Most groups deep in the lattice have a handful of members, and many
 * arrive already in order (a longer source prefix keeps the order of a
 * shorter one), so that is checked first.
 */
#define DEFINE_SORT(NAME, T, LESS)                                                                     \
    static void NAME(T *a, T *tmp, Py_ssize_t n)                                                       \
    {                                                                                                  \
        Py_ssize_t i = 1;                                                                              \
        while (i < n && !LESS(&a[i], &a[i - 1]))                                                       \
            i++;                                                                                       \
        if (i >= n)                                                                                    \
            return;                                                                                    \
        for (Py_ssize_t lo = 0; lo < n; lo += 16) {                                                    \
            Py_ssize_t hi = lo + 16 < n ? lo + 16 : n;                                                 \
            for (Py_ssize_t j = lo + 1; j < hi; j++) {                                                 \
                T t = a[j];                                                                            \
                Py_ssize_t q = j;                                                                      \
                for (; q > lo && LESS(&t, &a[q - 1]); q--)                                             \
                    a[q] = a[q - 1];                                                                   \
                a[q] = t;                                                                              \
            }                                                                                          \
        }                                                                                              \
        T *src = a, *dst = tmp;                                                                        \
        for (Py_ssize_t w = 16; w < n; w *= 2) {                                                       \
            for (Py_ssize_t lo = 0; lo < n; lo += 2 * w) {                                             \
                Py_ssize_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;        \
                Py_ssize_t p = lo, q = mid, o = lo;                                                    \
                while (p < mid && q < hi)                                                              \
                    dst[o++] = LESS(&src[q], &src[p]) ? src[q++] : src[p++];                           \
                while (p < mid)                                                                        \
                    dst[o++] = src[p++];                                                               \
                while (q < hi)                                                                         \
                    dst[o++] = src[q++];                                                               \
            }                                                                                          \
            T *t = src;                                                                                \
            src = dst;                                                                                 \
            dst = t;                                                                                   \
        }                                                                                              \
        if (src != a)                                                                                  \
            memcpy(a, src, (size_t)n * sizeof *a);                                                     \
    }

DEFINE_SORT(sort_narrow, narrow_t, narrow_less)
DEFINE_SORT(sort_wide, wide_t, wide_less)

static int push(lattice_t *L, const group_t *g)
{
    if (L->nstack == L->capstack) {
        Py_ssize_t cap = L->capstack ? 2 * L->capstack : 64;
        group_t *s = realloc(L->stack, (size_t)cap * sizeof *s);
        if (s == NULL)
            return -1;
        L->stack = s;
        L->capstack = cap;
    }
    L->stack[L->nstack++] = *g;
    return 0;
}

/* Pushes g when it can still matter: residual volume only shrinks, so a group
   below the threshold now could neither recurse nor be extracted. */
static int offer(lattice_t *L, const group_t *g, int root)
{
    return root || heavy(L, g) ? push(L, g) : 0;
}

/* Pushes the groups of parent's live members under (pl0, pl1) that can still matter (all at [0, 0]). */
static int group(lattice_t *L, Py_ssize_t parent, int pl0, int pl1)
{
    const int W = L->words, nk = 2 * W;
    Py_ssize_t a = L->stack[parent].a, e = L->stack[parent].e, k = a;
    for (Py_ssize_t i = a; i < e; i++) {
        Py_ssize_t t = L->perm[i];
        if (!L->dead[t]) {
            L->perm[i] = L->perm[k];
            L->perm[k++] = t;
        }
    }
    Py_ssize_t n = k - a;
    if (n == 0)
        return 0;
    uint64_t m[2 * MAX_WORDS];
    mask(m, W, pl0);
    mask(m + W, W, pl1);
    int root = pl0 == 0 && pl1 == 0;
    group_t g;
    memset(&g, 0, sizeof g);
    g.src_len = pl0;
    g.dst_len = pl1;
    if (L->packed) {
        narrow_t *s = L->scratch;
        const int low = 64 - L->bits, bits = L->bits;
        for (Py_ssize_t i = 0; i < n; i++) {
            const uint64_t *key = L->keys + L->perm[a + i] * 2;
            s[i].k = ((key[0] & m[0]) >> low) << bits | (key[1] & m[1]) >> low;
            s[i].idx = L->perm[a + i];
        }
        sort_narrow(s, s + n, n);
        for (Py_ssize_t i = 0, j; i < n; i = j) {
            g.a = a + i;
            g.bytes = g.pkts = 0;
            for (j = i; j < n && s[j].k == s[i].k; j++) {
                L->perm[a + j] = s[j].idx;
                g.bytes += L->vol[2 * s[j].idx];
                g.pkts += L->vol[2 * s[j].idx + 1];
            }
            g.e = a + j;
            g.src[0] = (s[i].k >> bits) << low;
            g.dst[0] = (s[i].k & (((uint64_t)1 << bits) - 1)) << low;
            if (offer(L, &g, root) < 0)
                return -1;
        }
        return 0;
    }
    wide_t *s = L->scratch;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t *key = L->keys + L->perm[a + i] * nk;
        for (int w = 0; w < 2 * MAX_WORDS; w++)
            s[i].k[w] = w < nk ? key[w] & m[w] : 0;
        s[i].idx = L->perm[a + i];
    }
    sort_wide(s, s + n, n);
    for (Py_ssize_t i = 0, j; i < n; i = j) {
        g.a = a + i;
        g.bytes = g.pkts = 0;
        for (j = i; j < n && !wide_less(&s[i], &s[j]); j++) {
            L->perm[a + j] = s[j].idx;
            g.bytes += L->vol[2 * s[j].idx];
            g.pkts += L->vol[2 * s[j].idx + 1];
        }
        g.e = a + j;
        memcpy(g.src, s[i].k, W * sizeof(uint64_t));
        memcpy(g.dst, s[i].k + W, W * sizeof(uint64_t));
        if (offer(L, &g, root) < 0)
            return -1;
    }
    return 0;
}

static int extract(lattice_t *L, const group_t *g)
{
    const int W = L->words;
    if (L->nout == L->capout) {
        /* Usually one aggregate per few hundred input flows: grow, rather than size for the worst. */
        Py_ssize_t cap = L->capout ? 2 * L->capout : 64;
        uint64_t *k = realloc(L->out_keys, (size_t)cap * 2 * W * sizeof *k);
        if (k == NULL)
            return -1;
        L->out_keys = k;
        int64_t *m = realloc(L->out_meta, (size_t)cap * 4 * sizeof *m);
        if (m == NULL)
            return -1;
        L->out_meta = m;
        L->capout = cap;
    }
    for (Py_ssize_t i = g->a; i < g->e; i++) {
        Py_ssize_t t = L->perm[i];
        if (!L->dead[t]) {
            L->dead[t] = 1;
            L->owner[t] = L->nout;
        }
    }
    memcpy(L->out_keys + L->nout * 2 * W, g->src, W * sizeof(uint64_t));
    memcpy(L->out_keys + L->nout * 2 * W + W, g->dst, W * sizeof(uint64_t));
    int64_t *meta = L->out_meta + L->nout * 4;
    meta[0] = g->src_len;
    meta[1] = g->dst_len;
    meta[2] = g->bytes;
    meta[3] = g->pkts;
    L->nout++;
    return 0;
}

/* Returns how many groups this call and its sub-calls extracted, or -1 on an error. */
static Py_ssize_t search(lattice_t *L, Py_ssize_t parent, int pl0, int pl1, int size, int pos)
{
    const int maxsize = L->maxsize;
    int on_edge = pl0 == maxsize ? LEFT : pl1 == maxsize ? RIGHT : 0;
    int do_aggregate = pos != UPPER, do_recurse = 1;
    if (size <= L->minsize)
        do_recurse = on_edge == LEFT && size != 0 && pl1 + size == maxsize;
    if ((pl0 > pl1 ? pl0 : pl1) < L->cutoff && size == L->cutoffres)
        do_recurse = 0;
    if (!(do_aggregate || do_recurse))
        return 0;
    Py_ssize_t base = L->nstack, first, last;
    if (do_aggregate) {
        if (group(L, parent, pl0, pl1) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        first = base;
        last = L->nstack;
        if (first == last)
            return 0;
    } else {
        /* Recurse into sub-areas of the parent itself. */
        first = parent;
        last = parent + 1;
    }
    Py_ssize_t found = 0;
    if (do_recurse) {
        int delta, subsize;
        if (size == L->minsize)
            delta = size, subsize = 0;
        else
            delta = subsize = size / 2;
        if (L->bits == 128 && pl0 + pl1 == 192)
            delta = size, subsize = 0; /* never split an IPv6 interface identifier */
        for (Py_ssize_t c = first; c < last; c++) {
            for (int subpos = LOWER; subpos <= UPPER; subpos++) {
                if (on_edge && (subpos == LEFT || subpos == RIGHT))
                    continue;
                if (!heavy(L, &L->stack[c]))
                    break;
                int s0 = pl0, s1 = pl1;
                if (subpos == LOWER) {
                    if (on_edge == LEFT)
                        s1 += delta;
                    else if (on_edge == RIGHT)
                        s0 += delta;
                    else
                        s0 += delta, s1 += delta;
                } else if (subpos == LEFT) {
                    s0 += delta;
                } else if (subpos == RIGHT) {
                    s1 += delta;
                }
                int lo = s0 < s1 ? s0 : s1;
                if (lo < L->cutoff && lo % L->cutoffres)
                    continue;
                int64_t b = L->stack[c].bytes, p = L->stack[c].pkts;
                Py_ssize_t n = search(L, c, s0, s1, subsize, subpos);
                if (n < 0)
                    return -1;
                found += n;
                if (n && do_aggregate) {
                    L->stack[parent].bytes -= b - L->stack[c].bytes;
                    L->stack[parent].pkts -= p - L->stack[c].pkts;
                }
            }
        }
    }
    if (do_aggregate && heavy(L, &L->stack[parent])) {
        for (Py_ssize_t c = first; c < last; c++) {
            const group_t *g = &L->stack[c];
            if (!heavy(L, g))
                continue;
            L->stack[parent].bytes -= g->bytes;
            L->stack[parent].pkts -= g->pkts;
            if (extract(L, g) < 0) {
                PyErr_NoMemory();
                return -1;
            }
            found++;
        }
    }
    L->nstack = base;
    return found;
}

static int get(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *name)
{
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len % itemsize) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: buffer size is not a multiple of %zd", name, itemsize);
        return -1;
    }
    return 0;
}

/*
 * hhh(keys, vol, words, bits, tb, tp, criterion, minsize, cutoff, cutoffres, passes, owner)
 *     -> (keys, meta)
 *
 * keys (uint64[N, 2W]): each input flow's source then destination key, W words
 * a side, top-aligned.  vol (int64[N, 2]): its bytes and packets.  passes
 * (int64[P, 4]): the (source length, destination length, step, edge length)
 * each pass starts from.  Writes owner (int64[N]: the aggregate that took the
 * flow, or -1).  Returns, per aggregate in extraction order, its masked keys
 * (bytes of uint64[M, 2W]) and (bytes of int64[M, 4]) its source length,
 * destination length, bytes and packets.
 */
static PyObject *hhh(PyObject *self, PyObject *args)
{
    PyObject *keys_o, *vol_o, *passes_o, *owner_o;
    int words, bits, crit, minsize, cutoff, cutoffres;
    long long tb, tp;
    Py_buffer keys, vol, passes, owner;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOiiLLiiiiOO", &keys_o, &vol_o, &words, &bits, &tb, &tp, &crit, &minsize,
                          &cutoff, &cutoffres, &passes_o, &owner_o))
        return NULL;
    if (words < 1 || words > MAX_WORDS || bits < 1 || bits > 64 * words || cutoffres < 1 || crit < 0 ||
        crit > CRIT_PACKET) {
        PyErr_SetString(PyExc_ValueError, "bad key space or criterion");
        return NULL;
    }
    Py_buffer *views[] = {&keys, &vol, &passes, &owner};
    PyObject *objs[] = {keys_o, vol_o, passes_o, owner_o};
    const int writable[] = {0, 0, 0, 1};
    const Py_ssize_t sizes[] = {16 * words, 16, 32, 8};
    const char *names[] = {"keys", "vol", "passes", "owner"};
    int got = 0;
    lattice_t L;
    memset(&L, 0, sizeof L);
    PyObject *result = NULL;
    for (; got < 4; got++)
        if (get(objs[got], views[got], writable[got], sizes[got], names[got]) < 0)
            goto done;
    Py_ssize_t n = keys.len / (16 * words), np_ = passes.len / 32;
    if (vol.len / 16 != n || owner.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "array lengths disagree");
        goto done;
    }
    const int64_t *ps = passes.buf;
    for (Py_ssize_t i = 0; i < 4 * np_; i++) {
        if (ps[i] < 0 || ps[i] > bits) {
            PyErr_SetString(PyExc_ValueError, "pass lengths must lie within the key space");
            goto done;
        }
    }
    L.keys = keys.buf;
    L.vol = vol.buf;
    L.words = words;
    L.bits = bits;
    L.crit = crit;
    L.minsize = minsize;
    L.cutoff = cutoff;
    L.cutoffres = cutoffres;
    L.tb = tb;
    L.tp = tp;
    L.owner = owner.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        L.owner[i] = -1;
    L.perm = malloc((size_t)(n + 1) * sizeof *L.perm);
    L.dead = calloc((size_t)(n + 1), 1);
    L.packed = words == 1 && bits <= 32;
    L.scratch = malloc(2 * (size_t)(n + 1) * (L.packed ? sizeof(narrow_t) : sizeof(wide_t)));
    if (L.perm == NULL || L.dead == NULL || L.scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    group_t root; /* every input flow; never extracted itself */
    memset(&root, 0, sizeof root);
    root.a = 0;
    root.e = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        L.perm[i] = i;
        root.bytes += L.vol[2 * i];
        root.pkts += L.vol[2 * i + 1];
    }
    if (push(&L, &root) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < np_; i++) {
        L.maxsize = (int)ps[4 * i + 3];
        if (search(&L, 0, (int)ps[4 * i], (int)ps[4 * i + 1], (int)ps[4 * i + 2], LOWER) < 0)
            goto done;
    }
    /* y# gives None for a NULL pointer: nothing extracted is two empty strings. */
    result = Py_BuildValue("y#y#", L.nout ? (const char *)L.out_keys : "",
                           L.nout * 2 * words * (Py_ssize_t)sizeof(uint64_t), L.nout ? (const char *)L.out_meta : "",
                           L.nout * 4 * (Py_ssize_t)sizeof(int64_t));
done:
    free(L.out_keys);
    free(L.out_meta);
    free(L.perm);
    free(L.dead);
    free(L.scratch);
    free(L.stack);
    for (int i = 0; i < got; i++)
        PyBuffer_Release(views[i]);
    return result;
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * odflows(records, itemsize, off_l3, off_src, off_dst, off_wire, family,
 *         keys_out, vol_out, first_out, flow_out) -> number of flows
 *
 * aguri3's input odflows of one family: one per (source, destination) address
 * pair among the records whose l3 is family (4 or 6), in ascending pair order.
 * For flow i: keys_out[i] (uint64[R, 2W]) its search keys (IPv4 top-aligned in
 * one word a side, IPv6 in two), vol_out[i] (int64[R, 2]) its wire bytes and
 * packets, first_out[i] (int64[R]) its first record.  flow_out (int64[R]):
 * each record's flow, -1 for another family.  R is the number of records.
 */
static PyObject *odflows(PyObject *self, PyObject *args)
{
    PyObject *rec_o, *keys_o, *vol_o, *first_o, *flow_o;
    Py_ssize_t isz, o_l3, o_src, o_dst, o_wire;
    int family;
    Py_buffer rec, keys, vol, first, flow;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnnnniOOOO", &rec_o, &isz, &o_l3, &o_src, &o_dst, &o_wire, &family, &keys_o,
                          &vol_o, &first_o, &flow_o))
        return NULL;
    if (isz <= 0 || o_l3 < 0 || o_l3 >= isz || o_src < 0 || o_src + 16 > isz || o_dst < 0 || o_dst + 16 > isz ||
        o_wire < 0 || o_wire + 4 > isz) {
        PyErr_SetString(PyExc_ValueError, "field offsets do not fit the record size");
        return NULL;
    }
    if (family != 4 && family != 6) {
        PyErr_SetString(PyExc_ValueError, "family must be 4 or 6");
        return NULL;
    }
    const int W = family == 4 ? 1 : 2;
    Py_buffer *views[] = {&rec, &keys, &vol, &first, &flow};
    PyObject *objs[] = {rec_o, keys_o, vol_o, first_o, flow_o};
    const int writable[] = {0, 1, 1, 1, 1};
    const Py_ssize_t sizes[] = {isz, 16 * W, 16, 8, 8};
    const char *names[] = {"records", "keys_out", "vol_out", "first_out", "flow_out"};
    int got = 0;
    void *scratch = NULL;
    PyObject *result = NULL;
    for (; got < 5; got++)
        if (get(objs[got], views[got], writable[got], sizes[got], names[got]) < 0)
            goto done;
    Py_ssize_t r = rec.len / isz, n = 0, nf = 0;
    if (keys.len / (16 * W) != r || vol.len / 16 != r || first.len / 8 != r || flow.len / 8 != r) {
        PyErr_SetString(PyExc_ValueError, "array lengths disagree");
        goto done;
    }
    const unsigned char *b = rec.buf;
    uint64_t *ko = keys.buf;
    int64_t *vo = vol.buf, *fo = first.buf, *flow_of = flow.buf;
    /* The sort is stable, so each flow's first entry is its first record. */
    scratch = malloc(2 * (size_t)(r + 1) * (W == 1 ? sizeof(narrow_t) : sizeof(wide_t)));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (W == 1) {
        narrow_t *s = scratch;
        for (Py_ssize_t i = 0; i < r; i++) {
            const unsigned char *p = b + i * isz;
            flow_of[i] = -1;
            if (p[o_l3] != family)
                continue;
            /* The low 32 bits of the 16-byte (IPv4-mapped) addresses: source above destination. */
            s[n].k = be64(p + o_src + 8) << 32 | (be64(p + o_dst + 8) & 0xFFFFFFFFu);
            s[n++].idx = i;
        }
        sort_narrow(s, s + n, n);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i == 0 || s[i].k != s[i - 1].k) {
                ko[2 * nf] = s[i].k & ~(uint64_t)0xFFFFFFFFu;
                ko[2 * nf + 1] = s[i].k << 32;
                vo[2 * nf] = vo[2 * nf + 1] = 0;
                fo[nf++] = s[i].idx;
            }
            const unsigned char *w = b + s[i].idx * isz + o_wire;
            vo[2 * (nf - 1)] += (int64_t)w[0] | (int64_t)w[1] << 8 | (int64_t)w[2] << 16 | (int64_t)w[3] << 24;
            vo[2 * (nf - 1) + 1]++;
            flow_of[s[i].idx] = nf - 1;
        }
    } else {
        wide_t *s = scratch;
        for (Py_ssize_t i = 0; i < r; i++) {
            const unsigned char *p = b + i * isz;
            flow_of[i] = -1;
            if (p[o_l3] != family)
                continue;
            s[n].k[0] = be64(p + o_src);
            s[n].k[1] = be64(p + o_src + 8);
            s[n].k[2] = be64(p + o_dst);
            s[n].k[3] = be64(p + o_dst + 8);
            s[n++].idx = i;
        }
        sort_wide(s, s + n, n);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i == 0 || wide_less(&s[i - 1], &s[i])) {
                memcpy(ko + 4 * nf, s[i].k, 4 * sizeof(uint64_t));
                vo[2 * nf] = vo[2 * nf + 1] = 0;
                fo[nf++] = s[i].idx;
            }
            const unsigned char *w = b + s[i].idx * isz + o_wire;
            vo[2 * (nf - 1)] += (int64_t)w[0] | (int64_t)w[1] << 8 | (int64_t)w[2] << 16 | (int64_t)w[3] << 24;
            vo[2 * (nf - 1) + 1]++;
            flow_of[s[i].idx] = nf - 1;
        }
    }
    result = PyLong_FromSsize_t(nf);
done:
    free(scratch);
    for (int i = 0; i < got; i++)
        PyBuffer_Release(views[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"hhh", hhh, METH_VARARGS,
     "hhh(keys, vol, words, bits, tb, tp, criterion, minsize, cutoff, cutoffres, passes, owner) -> (keys, meta)"},
    {"odflows", odflows, METH_VARARGS,
     "odflows(records, itemsize, off_l3, off_src, off_dst, off_wire, family, keys_out, vol_out, first_out, "
     "flow_out) -> number of flows"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lattice", "aguri3's input odflows and the lattice search of its hhh.c.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__lattice(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyModule_AddIntConstant(m, "COMBINATION", CRIT_COMBINATION);
    PyModule_AddIntConstant(m, "BYTE", CRIT_BYTE);
    PyModule_AddIntConstant(m, "PACKET", CRIT_PACKET);
    return m;
}
