/* riverbed._native.cleanscan: the log cleaner's two walks over a records block.
 *
 * The cleaner (riverbed/storage/cleaner.py) needs, per batch, only the key and offset of each
 * record (to fill its key -> latest offset map), then which records of a batch stay (to copy
 * the batch as it is, or to write it again with fewer records). Decoding every record into a
 * Python object costs about a microsecond per record; these walk the varints in C and touch
 * Python objects only for the map's keys. The Python walk in riverbed/storage/cleaner_scan.py
 * is the reference (and the fallback where this module is not built); a test checks the two
 * agree. Every read is bounds-checked: a malformed block raises ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A zigzag varint at *pos: 0, -1 truncated, -2 too long. */
static int read_varint(const unsigned char *p, Py_ssize_t len, Py_ssize_t *pos, long long *out)
{
    unsigned long long raw = 0;
    int shift = 0;
    for (;;) {
        if (*pos >= len)
            return -1;
        unsigned char b = p[(*pos)++];
        raw |= (unsigned long long)(b & 0x7F) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
        if (shift > 63)
            return -2;
    }
    *out = (long long)(raw >> 1) ^ -(long long)(raw & 1);
    return 0;
}

/* One record's fields: where it starts (its length varint) and ends, its timestamp and offset
 * deltas, its key (kpos, klen: -1 for null) and whether its value is null. */
typedef struct {
    Py_ssize_t start, end, kpos;
    long long ts_delta, offset_delta, klen, vlen;
} rec_t;

static const char *next_record(const unsigned char *p, Py_ssize_t len, Py_ssize_t *pos, rec_t *r)
{
    long long length;
    r->start = *pos;
    if (read_varint(p, len, pos, &length) != 0)
        return "truncated record";
    if (length < 1 || length > len - *pos)
        return "truncated record";
    r->end = *pos + (Py_ssize_t)length;
    *pos += 1; /* attributes */
    if (read_varint(p, r->end, pos, &r->ts_delta) != 0 || read_varint(p, r->end, pos, &r->offset_delta) != 0)
        return "truncated record";
    if (read_varint(p, r->end, pos, &r->klen) != 0)
        return "truncated record";
    r->kpos = *pos;
    if (r->klen < -1 || r->klen > r->end - *pos)
        return "a record's key overruns it";
    if (r->klen > 0)
        *pos += (Py_ssize_t)r->klen;
    if (read_varint(p, r->end, pos, &r->vlen) != 0)
        return "truncated record";
    if (r->vlen < -1 || r->vlen > r->end - *pos)
        return "a record's value overruns it";
    *pos = r->end;
    return NULL;
}

/* map_keys(block, count, base_offset, first_dirty, map, budget, entry_bytes) ->
 *     (stop_offset, bytes_used, latest_offset)
 * map[key] = offset for every keyed record at or beyond first_dirty. A new key costs
 * entry_bytes + max(0, len(key) - 16) of the budget; the first record whose new key does not
 * fit stops the walk: stop_offset is its offset (-1 when every record fit). */
static PyObject *map_keys(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t count;
    long long base, first_dirty, budget, entry_bytes;
    PyObject *map;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nLLO!LL", &buf, &count, &base, &first_dirty, &PyDict_Type, &map, &budget, &entry_bytes))
        return NULL;
    const unsigned char *p = (const unsigned char *)buf.buf;
    const Py_ssize_t len = buf.len;
    Py_ssize_t pos = 0;
    long long used = 0, latest = -1, stop = -1;
    const char *problem = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        rec_t r;
        if ((problem = next_record(p, len, &pos, &r)) != NULL)
            goto bad;
        long long offset = base + r.offset_delta;
        if (offset < first_dirty || r.klen < 0)
            continue;
        PyObject *key = PyBytes_FromStringAndSize((const char *)p + r.kpos, (Py_ssize_t)r.klen);
        if (key == NULL)
            goto error;
        int has = PyDict_Contains(map, key);
        if (has < 0) {
            Py_DECREF(key);
            goto error;
        }
        if (!has) {
            long long cost = entry_bytes + (r.klen > 16 ? r.klen - 16 : 0);
            if (used + cost > budget) {
                Py_DECREF(key);
                stop = offset;
                break;
            }
            used += cost;
        }
        PyObject *value = PyLong_FromLongLong(offset);
        if (value == NULL || PyDict_SetItem(map, key, value) != 0) {
            Py_XDECREF(value);
            Py_DECREF(key);
            goto error;
        }
        Py_DECREF(value);
        Py_DECREF(key);
        if (offset > latest)
            latest = offset;
    }
    if (stop < 0 && pos != len) {
        problem = "bytes left after the declared records";
        goto bad;
    }
    PyBuffer_Release(&buf);
    return Py_BuildValue("LLL", stop, used, latest);
bad:
    PyErr_SetString(PyExc_ValueError, problem);
error:
    PyBuffer_Release(&buf);
    return NULL;
}

/* filter_records(block, count, base_offset, end_offset, map, drop_tombstones) ->
 *     (kept_block or None, kept, invalid_removed, tombstones_removed, tombstones_kept,
 *      max_ts_delta)
 * Which records of a batch stay: every record at or beyond end_offset; below it, a record
 * without a key goes (invalid), one older than its key's offset in map goes (superseded), a
 * tombstone goes when drop_tombstones. kept_block is None when every record stays, else the
 * kept records' bytes as they were (their deltas are relative to the unchanged base offset
 * and timestamp). max_ts_delta: the largest timestamp delta among the kept records. */
static PyObject *filter_records(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t count;
    long long base, end_offset;
    PyObject *map;
    int drop_tombstones;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nLLO!p", &buf, &count, &base, &end_offset, &PyDict_Type, &map, &drop_tombstones))
        return NULL;
    const unsigned char *p = (const unsigned char *)buf.buf;
    const Py_ssize_t len = buf.len;
    Py_ssize_t pos = 0, out_len = 0, kept = 0, invalid = 0, tomb_removed = 0;
    int tomb_kept = 0;
    long long max_ts_delta = LLONG_MIN;
    const char *problem = NULL;
    unsigned char *out = PyMem_Malloc(len > 0 ? (size_t)len : 1);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        rec_t r;
        if ((problem = next_record(p, len, &pos, &r)) != NULL)
            goto bad;
        long long offset = base + r.offset_delta;
        int keep = 1;
        if (offset >= end_offset) {
            keep = 1;
        } else if (r.klen < 0) {
            keep = 0;
            invalid++;
        } else {
            PyObject *key = PyBytes_FromStringAndSize((const char *)p + r.kpos, (Py_ssize_t)r.klen);
            if (key == NULL)
                goto error;
            PyObject *latest = PyDict_GetItemWithError(map, key); /* borrowed */
            Py_DECREF(key);
            if (latest == NULL && PyErr_Occurred())
                goto error;
            long long latest_offset = latest == NULL ? -1 : PyLong_AsLongLong(latest);
            if (latest_offset == -1 && PyErr_Occurred())
                goto error;
            if (offset < latest_offset) {
                keep = 0;
            } else if (r.vlen < 0 && drop_tombstones) {
                keep = 0;
                tomb_removed++;
            }
        }
        if (keep) {
            memcpy(out + out_len, p + r.start, (size_t)(r.end - r.start));
            out_len += r.end - r.start;
            kept++;
            if (r.vlen < 0)
                tomb_kept = 1;
            if (r.ts_delta > max_ts_delta)
                max_ts_delta = r.ts_delta;
        }
    }
    if (pos != len) {
        problem = "bytes left after the declared records";
        goto bad;
    }
    PyBuffer_Release(&buf);
    PyObject *block;
    if (kept == count) {
        block = Py_None;
        Py_INCREF(block);
    } else {
        block = PyBytes_FromStringAndSize((const char *)out, out_len);
        if (block == NULL) {
            PyMem_Free(out);
            return NULL;
        }
    }
    PyMem_Free(out);
    return Py_BuildValue("NnnnNL", block, kept, invalid, tomb_removed, PyBool_FromLong(tomb_kept), max_ts_delta);
bad:
    PyErr_SetString(PyExc_ValueError, problem);
error:
    PyMem_Free(out);
    PyBuffer_Release(&buf);
    return NULL;
}

static PyMethodDef methods[] = {
    {"map_keys", map_keys, METH_VARARGS,
     "map_keys(block, count, base_offset, first_dirty, map, budget, entry_bytes) -> (stop_offset, bytes_used, latest_offset)"},
    {"filter_records", filter_records, METH_VARARGS,
     "filter_records(block, count, base_offset, end_offset, map, drop_tombstones) -> (kept_block|None, kept, invalid_removed, tombstones_removed, tombstones_kept, max_ts_delta)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "riverbed._native.cleanscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit_cleanscan(void) { return PyModule_Create(&module); }
