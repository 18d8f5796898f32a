/* riverbed._native.recscan: the distinct key or value prefixes of a Kafka records block.
 *
 * The produce-time schema-id check (riverbed/broker/schema_ids.py) needs, for every record of
 * a batch, the first five bytes of its key or value (magic byte and schema id). Walking the
 * records' varints in Python costs about a microsecond per record; this does the same walk in C
 * and returns only what the check needs when every record is fine: each distinct prefix (None
 * for a null key or value) and the index of the first record that has it. The Python walk stays
 * the reference (and the fallback where this module is not built); a property test checks the
 * two agree. Every read is bounds-checked: a malformed block raises ValueError.
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

static int skip_varint(const unsigned char *p, Py_ssize_t len, Py_ssize_t *pos)
{
    for (int n = 0; n < 10; n++) {
        if (*pos >= len)
            return -1;
        if (!(p[(*pos)++] & 0x80))
            return 0;
    }
    return -2;
}

static PyObject *prefixes(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t count;
    int side;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ni", &buf, &count, &side))
        return NULL;
    const unsigned char *p = (const unsigned char *)buf.buf;
    const Py_ssize_t len = buf.len;
    Py_ssize_t pos = 0;
    const char *problem = NULL;
    PyObject *out = PyDict_New();
    if (out == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < count; i++) {
        long long length, klen, vlen;
        if (read_varint(p, len, &pos, &length) != 0) { problem = "truncated record"; goto bad; }
        if (length < 0 || length > len - pos) { problem = "truncated record"; goto bad; }
        const Py_ssize_t end = pos + (Py_ssize_t)length;
        pos += 1; /* attributes */
        if (skip_varint(p, len, &pos) != 0 || skip_varint(p, len, &pos) != 0) { problem = "truncated record"; goto bad; }
        if (read_varint(p, len, &pos, &klen) != 0) { problem = "truncated record"; goto bad; }
        const Py_ssize_t kpos = pos;
        if (klen < -1 || klen > end - pos) { problem = "a record's key or value overruns it"; goto bad; }
        if (klen > 0)
            pos += (Py_ssize_t)klen;
        if (read_varint(p, len, &pos, &vlen) != 0) { problem = "truncated record"; goto bad; }
        if (vlen < -1 || pos > end || (vlen > 0 && vlen > end - pos)) { problem = "a record's key or value overruns it"; goto bad; }
        const Py_ssize_t start = side ? pos : kpos;
        const long long size = side ? vlen : klen;
        PyObject *key;
        if (size < 0) {
            key = Py_None;
            Py_INCREF(key);
        } else {
            key = PyBytes_FromStringAndSize((const char *)p + start, size < 5 ? (Py_ssize_t)size : 5);
            if (key == NULL)
                goto error;
        }
        int has = PyDict_Contains(out, key);
        if (has == 0) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyDict_SetItem(out, key, index) != 0) {
                Py_XDECREF(index);
                Py_DECREF(key);
                goto error;
            }
            Py_DECREF(index);
        }
        Py_DECREF(key);
        if (has < 0)
            goto error;
        pos = end;
    }
    PyBuffer_Release(&buf);
    return out;
bad:
    PyErr_SetString(PyExc_ValueError, problem);
error:
    Py_XDECREF(out);
    PyBuffer_Release(&buf);
    return NULL;
}

/* count(block) -> (records, status, detail): hop from record length to record length, as
 * riverbed.protocol.records.records.count_records does. status 0: the lengths tile the block
 * (detail 0); 1: record `records` has a negative length; 2: its length varint is truncated or
 * longer than 5 bytes; 3: record `records - 1` extends `detail` bytes past the end. */
static PyObject *count(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &buf))
        return NULL;
    const unsigned char *p = (const unsigned char *)buf.buf;
    const Py_ssize_t end = buf.len;
    Py_ssize_t pos = 0, n = 0;
    int status = 0;
    while (pos < end) {
        unsigned char b = p[pos];
        if (b & 1) { status = 1; break; }
        unsigned long long raw = 0;
        int i = 0;
        for (;;) {
            if (pos + i >= end || i >= 5) { status = 2; break; }
            unsigned char c = p[pos + i];
            raw |= (unsigned long long)(c & 0x7F) << (7 * i);
            i++;
            if (!(c & 0x80))
                break;
        }
        if (status)
            break;
        pos += i + (Py_ssize_t)(raw >> 1);
        n++;
    }
    PyBuffer_Release(&buf);
    if (status == 0 && pos != end)
        return Py_BuildValue("nin", n, 3, pos - end);
    return Py_BuildValue("nin", n, status, (Py_ssize_t)0);
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS, "count(block) -> (records, status, detail): the shallow walk of a records block"},
    {"prefixes", prefixes, METH_VARARGS,
     "prefixes(block, count, side) -> {first 5 bytes of the key (side 0) or value (side 1), or None: index of the first record with it}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "riverbed._native.recscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit_recscan(void) { return PyModule_Create(&module); }
