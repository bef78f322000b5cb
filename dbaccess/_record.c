/* The hot part of dbaccess/record.py in C: building rows and reading them.
 *
 * dbaccess/_record_fallback.py is the same in Python, used where this module could not
 * be compiled (and typed: mypy reads it). record.py builds the public classes on top
 * of whichever it imports.
 *
 * - MetaBase holds what the rows of one result share: `index` (a dict from every key a
 *   row can be read by to its position, or to None for an ambiguous name) and
 *   `processors` (a tuple of (position, function) pairs for the columns to convert).
 * - RecordBase holds one row: its meta, the driver's row (`_raw`) and the converted
 *   values (`_values`, None until the first read converts them).
 * - make_all(plain_cls, container_cls, meta, rows) wraps a list of driver rows in one
 *   C loop.
 *
 * A read whose key is not in the index (a slice, a foreign column, an ambiguous or
 * unknown name) is handed to the Python method _slow_getitem(values, key), which
 * finds it or raises the right error.
 *
 * Records stay out of the garbage collector's way. Every allocation of an object the
 * collector knows counts towards its next collection, and one more per row set off
 * full collections on large results. So plain_cls (Record) is made by
 * untracked_subclass, a class the collector does not know, and make_all() uses it
 * unless a row may lead back to its record through a container among its values
 * (holds_container; record.py passes container_cls as plain_cls when a column type may
 * return one, such as JSON), where it uses container_cls (ContainerRecord), which the
 * collector knows.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <datetime.h>

typedef struct {
    PyObject_HEAD
    PyObject *index;      /* dict */
    PyObject *processors; /* tuple of (int, callable) */
} MetaObject;

typedef struct {
    PyObject_HEAD
    PyObject *meta;   /* a MetaObject, or NULL before __init__ */
    PyObject *raw;    /* the driver's row */
    PyObject *values; /* the converted row, or None until the first read */
} RecordObject;

/* The converted values of a record the garbage collector does not know: a sequence of
 * the collector does not know either, since allocating a list per converted row would
 * count towards collections as much as the record itself. Only atoms go in one. */
typedef struct {
    PyObject_VAR_HEAD
    PyObject *items[1];
} ValuesObject;

static PyTypeObject MetaType;
static PyTypeObject RecordType;
static PyTypeObject ValuesType;
static PyObject *str_slow_getitem;
static PyTypeObject *uuid_type; /* uuid.UUID */

/* ---- MetaBase ---------------------------------------------------------------------- */

static int
meta_traverse(MetaObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->index);
    Py_VISIT(self->processors);
    return 0;
}

static int
meta_clear(MetaObject *self)
{
    Py_CLEAR(self->index);
    Py_CLEAR(self->processors);
    return 0;
}

static void
meta_dealloc(MetaObject *self)
{
    PyObject_GC_UnTrack(self);
    meta_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
meta_get_index(MetaObject *self, void *closure)
{
    if (self->index == NULL) {
        PyErr_SetString(PyExc_AttributeError, "index");
        return NULL;
    }
    return Py_NewRef(self->index);
}

static int
meta_set_index(MetaObject *self, PyObject *value, void *closure)
{
    if (value == NULL || !PyDict_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "ResultMeta.index must be a dict");
        return -1;
    }
    Py_XSETREF(self->index, Py_NewRef(value));
    return 0;
}

static PyObject *
meta_get_processors(MetaObject *self, void *closure)
{
    if (self->processors == NULL) {
        PyErr_SetString(PyExc_AttributeError, "processors");
        return NULL;
    }
    return Py_NewRef(self->processors);
}

static int
meta_set_processors(MetaObject *self, PyObject *value, void *closure)
{
    if (value == NULL || !PyTuple_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "ResultMeta.processors must be a tuple");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(value); i++) {
        PyObject *pair = PyTuple_GET_ITEM(value, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "ResultMeta.processors must hold (position, function) pairs");
            return -1;
        }
    }
    Py_XSETREF(self->processors, Py_NewRef(value));
    return 0;
}

static PyGetSetDef meta_getset[] = {
    {"index", (getter)meta_get_index, (setter)meta_set_index, NULL, NULL},
    {"processors", (getter)meta_get_processors, (setter)meta_set_processors, NULL, NULL},
    {NULL},
};

static PyTypeObject MetaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dbaccess._record.MetaBase",
    .tp_basicsize = sizeof(MetaObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What every row of one result shares (the C base of ResultMeta).",
    .tp_traverse = (traverseproc)meta_traverse,
    .tp_clear = (inquiry)meta_clear,
    .tp_dealloc = (destructor)meta_dealloc,
    .tp_getset = meta_getset,
    .tp_new = PyType_GenericNew,
};

/* ---- Values ------------------------------------------------------------------------ */

static void
values_dealloc(ValuesObject *self)
{
    for (Py_ssize_t i = 0; i < Py_SIZE(self); i++) {
        Py_XDECREF(self->items[i]);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
values_length(ValuesObject *self)
{
    return Py_SIZE(self);
}

static PyObject *
values_item(ValuesObject *self, Py_ssize_t i)
{
    if (i < 0 || i >= Py_SIZE(self)) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return Py_NewRef(self->items[i]);
}

static PySequenceMethods values_as_sequence = {
    .sq_length = (lenfunc)values_length,
    .sq_item = (ssizeargfunc)values_item,
};

static PyTypeObject ValuesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dbaccess._record.Values",
    .tp_basicsize = offsetof(ValuesObject, items),
    .tp_itemsize = sizeof(PyObject *),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The converted values of a record (a sequence).",
    .tp_dealloc = (destructor)values_dealloc,
    .tp_as_sequence = &values_as_sequence,
};

/* A copy of a driver's row: a list, or Values for a record the collector does not know. */
static PyObject *
copy_row(RecordObject *self)
{
    if (PyObject_IS_GC((PyObject *)self)) {
        return PySequence_List(self->raw);
    }
    Py_ssize_t width = PySequence_Size(self->raw);
    if (width < 0) {
        return NULL;
    }
    ValuesObject *values = PyObject_NewVar(ValuesObject, &ValuesType, width);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        values->items[i] = NULL;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject *item = PySequence_GetItem(self->raw, i);
        if (item == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        values->items[i] = item;
    }
    return (PyObject *)values;
}

/* The item array of a list, a tuple or Values (Py_SIZE items), else NULL. */
static inline PyObject **
items_of(PyObject *sequence)
{
    if (PyList_CheckExact(sequence) || PyTuple_CheckExact(sequence)) {
        return PySequence_Fast_ITEMS(sequence);
    }
    if (Py_IS_TYPE(sequence, &ValuesType)) {
        return ((ValuesObject *)sequence)->items;
    }
    return NULL;
}

/* ---- RecordBase -------------------------------------------------------------------- */

static int
record_traverse(RecordObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->meta);
    Py_VISIT(self->raw);
    Py_VISIT(self->values);
    return 0;
}

static int
record_clear(RecordObject *self)
{
    Py_CLEAR(self->meta);
    Py_CLEAR(self->raw);
    Py_CLEAR(self->values);
    return 0;
}

static void
record_dealloc(RecordObject *self)
{
    PyObject_GC_UnTrack(self);
    record_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
check_meta(PyObject *meta)
{
    if (!PyObject_TypeCheck(meta, &MetaType) || ((MetaObject *)meta)->index == NULL ||
        ((MetaObject *)meta)->processors == NULL) {
        PyErr_Format(PyExc_TypeError, "a Record's meta must be a ResultMeta, not %.100s",
                     Py_TYPE(meta)->tp_name);
        return -1;
    }
    return 0;
}

/* Whether `value` is, or may become, a container that could lead back to a record: a
 * list, a dict (even one that holds only text for now), an object with attributes.
 * Not strings, numbers, datetimes, None, a tuple CPython found to hold only such
 * values, nor a UUID (immutable, though the collector knows its type). */
static inline int
is_container(PyObject *value)
{
    return PyObject_IS_GC(value) && (!PyTuple_CheckExact(value) || PyObject_GC_IsTracked(value)) &&
           !PyObject_TypeCheck(value, uuid_type);
}

/* Whether any value of a driver's row is a container (a list from a PostgreSQL array,
 * a Range): an error counts as yes. */
static int
holds_container(PyObject *row)
{
    PyObject **items = items_of(row);
    if (items != NULL) {
        for (Py_ssize_t i = 0; i < Py_SIZE(row); i++) {
            if (is_container(items[i])) {
                return 1;
            }
        }
        return 0;
    }
    Py_ssize_t width = PySequence_Size(row); /* a driver's own row type (asyncpg's) */
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject *item = PySequence_GetItem(row, i);
        if (item == NULL) {
            PyErr_Clear();
            return 1;
        }
        int container = is_container(item);
        Py_DECREF(item);
        if (container) {
            return 1;
        }
    }
    if (width < 0) {
        PyErr_Clear();
        return 1;
    }
    return 0;
}

static void
record_set(RecordObject *self, PyObject *meta, PyObject *raw, PyObject *values)
{
    Py_XSETREF(self->meta, Py_NewRef(meta));
    Py_XSETREF(self->raw, Py_NewRef(raw));
    Py_XSETREF(self->values, Py_NewRef(values));
}

static int
record_init(RecordObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"meta", "raw", "values", NULL};
    PyObject *meta, *raw, *values;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:Record", kwlist, &meta, &raw, &values)) {
        return -1;
    }
    if (check_meta(meta) < 0) {
        return -1;
    }
    record_set(self, meta, raw, values);
    return 0;
}

/* Convert the driver's row by the meta's processors; return the values (borrowed). */
static PyObject *
record_convert(RecordObject *self)
{
    if (self->raw == NULL) {
        PyErr_SetString(PyExc_TypeError, "the Record holds no row");
        return NULL;
    }
    PyObject *values = copy_row(self);
    if (values == NULL) {
        return NULL;
    }
    /* Held: a processor is Python code, which could replace the meta's processors. */
    PyObject *processors = Py_NewRef(((MetaObject *)self->meta)->processors);
    Py_ssize_t width = Py_SIZE(values);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(processors); i++) {
        PyObject *pair = PyTuple_GET_ITEM(processors, i);
        Py_ssize_t position = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        if (position == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (position < 0 || position >= width) {
            continue; /* a processor for a column this row does not have */
        }
        PyObject **item = &items_of(values)[position];
        PyObject *converted = PyObject_CallOneArg(PyTuple_GET_ITEM(pair, 1), *item);
        if (converted == NULL) {
            goto error;
        }
        Py_SETREF(*item, converted);
    }
    Py_DECREF(processors);
    /* The driver's row is no longer needed: keep one reference, to the values. */
    Py_XSETREF(self->raw, Py_NewRef(values));
    Py_XSETREF(self->values, values);
    return values;

error:
    Py_DECREF(processors);
    Py_DECREF(values);
    return NULL;
}

static PyObject *
record_values(RecordObject *self)
{
    if (self->meta == NULL) { /* made by __new__ alone */
        PyErr_SetString(PyExc_TypeError, "the Record holds no row");
        return NULL;
    }
    PyObject *values = self->values;
    if (values == NULL || values == Py_None) {
        return record_convert(self);
    }
    return values;
}

static PyObject *
record_subscript(RecordObject *self, PyObject *key)
{
    PyObject *values = record_values(self);
    if (values == NULL) {
        return NULL;
    }
    /* Held: looking the key up may run Python code (its __hash__ and __eq__). */
    Py_INCREF(values);
    PyObject *index = Py_NewRef(((MetaObject *)self->meta)->index);
    PyObject *result = NULL;
    PyObject *position = PyDict_GetItemWithError(index, key);
    Py_ssize_t i = -1;
    if (position != NULL && PyLong_CheckExact(position)) {
        i = PyLong_AsSsize_t(position);
    }
    Py_DECREF(index); /* position is not read again */
    if (i == -1 && PyErr_Occurred()) {
        /* An unhashable key (a slice before Python 3.12, a list): the slow path says. */
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            Py_DECREF(values);
            return NULL;
        }
        PyErr_Clear();
    }
    else if (i >= 0) {
        PyObject **items = items_of(values);
        if (items == NULL) { /* a driver's own row type (asyncpg's) */
            result = PySequence_GetItem(values, i);
            Py_DECREF(values);
            return result;
        }
        if (i < Py_SIZE(values)) {
            result = Py_NewRef(items[i]);
        }
    }
    if (result == NULL) {
        if (Py_IS_TYPE(values, &ValuesType)) { /* the slow path slices: give it a tuple */
            Py_SETREF(values, PySequence_Tuple(values));
            if (values == NULL) {
                return NULL;
            }
        }
        result = PyObject_CallMethodObjArgs((PyObject *)self, str_slow_getitem, values, key,
                                            NULL);
    }
    Py_DECREF(values);
    return result;
}

static PyObject *
record_row(RecordObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *values = record_values(self);
    return values == NULL ? NULL : Py_NewRef(values);
}

/* Read-only: a record is filled once, by __init__ or make_all (None while unset). */
static PyMemberDef record_members[] = {
    {"_meta", T_OBJECT, offsetof(RecordObject, meta), READONLY, NULL},
    {"_raw", T_OBJECT, offsetof(RecordObject, raw), READONLY, NULL},
    {"_values", T_OBJECT, offsetof(RecordObject, values), READONLY, NULL},
    {NULL},
};

static PyMethodDef record_methods[] = {
    {"_row", (PyCFunction)record_row, METH_NOARGS,
     "Return the converted values, converting the driver's row on first use."},
    {NULL},
};

static PyMappingMethods record_as_mapping = {
    .mp_subscript = (binaryfunc)record_subscript,
};

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dbaccess._record.RecordBase",
    .tp_basicsize = sizeof(RecordObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One result row (the C base of Record).",
    .tp_traverse = (traverseproc)record_traverse,
    .tp_clear = (inquiry)record_clear,
    .tp_dealloc = (destructor)record_dealloc,
    .tp_as_mapping = &record_as_mapping,
    .tp_methods = record_methods,
    .tp_members = record_members,
    .tp_init = (initproc)record_init,
    .tp_new = PyType_GenericNew,
};

/* ---- make_all ---------------------------------------------------------------------- */

static int
check_record_class(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RecordType)) {
        PyErr_SetString(PyExc_TypeError, "make_all() needs subclasses of RecordBase");
        return -1;
    }
    return 0;
}

static PyObject *
make_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "make_all(plain_cls, container_cls, meta, rows) takes 4 arguments");
        return NULL;
    }
    PyObject *plain = args[0], *containing = args[1], *meta = args[2];
    if (check_record_class(plain) < 0 || check_record_class(containing) < 0 ||
        check_meta(meta) < 0) {
        return NULL;
    }
    PyObject *rows = PySequence_Fast(args[3], "make_all() needs a sequence of rows");
    if (rows == NULL) {
        return NULL;
    }
    int converted = PyTuple_GET_SIZE(((MetaObject *)meta)->processors) == 0;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(rows);
    PyObject **items = PySequence_Fast_ITEMS(rows);
    PyObject *records = PyList_New(count);
    if (records == NULL) {
        Py_DECREF(rows);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyTypeObject *type = (PyTypeObject *)plain;
        if (plain != containing && holds_container(items[i])) {
            type = (PyTypeObject *)containing;
        }
        RecordObject *record = (RecordObject *)type->tp_alloc(type, 0);
        if (record == NULL) {
            Py_DECREF(records);
            Py_DECREF(rows);
            return NULL;
        }
        record_set(record, meta, items[i], converted ? items[i] : Py_None);
        PyList_SET_ITEM(records, i, (PyObject *)record);
    }
    Py_DECREF(rows);
    return records;
}

/* ---- untracked_subclass ------------------------------------------------------------ */

/* The dealloc of the untracked class, and of its subclasses (which the collector does
 * know, as CPython gives every class statement's class GC). */
static void
untracked_dealloc(RecordObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (PyObject_IS_GC((PyObject *)self)) {
        PyObject_GC_UnTrack(self);
    }
    record_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type); /* a heap type's instances hold a reference to it */
}

static PyObject *
untracked_subclass(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_Check(args[1]) || check_record_class(args[0]) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "untracked_subclass(base, qualified_name, doc)");
        }
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(args[1]);
    if (name == NULL) {
        return NULL;
    }
    PyType_Slot slots[] = {
        {Py_tp_dealloc, untracked_dealloc},
        /* A traverse function keeps PyType_Ready from making the class GC like its
         * base; subclasses, which are GC, traverse the row through it. */
        {Py_tp_traverse, record_traverse},
        {Py_tp_clear, record_clear},
        {Py_tp_free, PyObject_Free},
        {0, NULL},
    };
    PyType_Spec spec = {
        .name = name,
        .basicsize = 0, /* the base's */
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
        .slots = slots,
    };
    PyObject *bases = PyTuple_Pack(1, args[0]);
    if (bases == NULL) {
        return NULL;
    }
    PyObject *type = PyType_FromSpecWithBases(&spec, bases);
    Py_DECREF(bases);
    if (type == NULL) {
        return NULL;
    }
    if (PyType_IS_GC((PyTypeObject *)type)) {
        Py_DECREF(type);
        PyErr_SetString(PyExc_RuntimeError, "untracked_subclass() made a GC class");
        return NULL;
    }
    if (PyObject_SetAttrString(type, "__doc__", args[2]) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

/* iso_datetime_text(fallback, value): SQLite's text of a naive datetime, as SQLAlchemy's
 * default storage format writes it ("YYYY-MM-DD HH:MM:SS.ffffff"); any other value (a
 * subclass, an aware datetime, a date, None) goes to fallback(value). processors.py binds
 * the fallback with functools.partial and uses it only where the dialect's own text was
 * checked to be this format. */
static PyObject *
iso_datetime_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "iso_datetime_text(fallback, value)");
        return NULL;
    }
    PyObject *value = args[1];
    if (!PyDateTime_CheckExact(value) || PyDateTime_DATE_GET_TZINFO(value) != Py_None) {
        return PyObject_CallOneArg(args[0], value);
    }
    char text[40];
    int size = snprintf(text, sizeof(text), "%04d-%02d-%02d %02d:%02d:%02d.%06d",
                        PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                        PyDateTime_GET_DAY(value), PyDateTime_DATE_GET_HOUR(value),
                        PyDateTime_DATE_GET_MINUTE(value), PyDateTime_DATE_GET_SECOND(value),
                        PyDateTime_DATE_GET_MICROSECOND(value));
    if (size < 0 || (size_t)size >= sizeof(text)) {
        PyErr_SetString(PyExc_SystemError, "iso_datetime_text: unexpected length");
        return NULL;
    }
    return PyUnicode_FromStringAndSize(text, size);
}

static PyMethodDef module_methods[] = {
    {"make_all", (PyCFunction)(void (*)(void))make_all, METH_FASTCALL,
     "Wrap each driver row in a record: of container_cls where the row holds a container, "
     "else of plain_cls."},
    {"untracked_subclass", (PyCFunction)(void (*)(void))untracked_subclass, METH_FASTCALL,
     "Return a subclass of a RecordBase subclass whose instances the garbage collector "
     "does not know."},
    {"iso_datetime_text", (PyCFunction)(void (*)(void))iso_datetime_text, METH_FASTCALL,
     "SQLite's text of a naive datetime (YYYY-MM-DD HH:MM:SS.ffffff), else fallback(value)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dbaccess._record",
    .m_doc = "Result rows in C (see dbaccess/record.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__record(void)
{
    if (PyType_Ready(&MetaType) < 0 || PyType_Ready(&RecordType) < 0 ||
        PyType_Ready(&ValuesType) < 0) {
        return NULL;
    }
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    str_slow_getitem = PyUnicode_InternFromString("_slow_getitem");
    if (str_slow_getitem == NULL) {
        return NULL;
    }
    PyObject *uuid = PyImport_ImportModule("uuid");
    if (uuid == NULL) {
        return NULL;
    }
    uuid_type = (PyTypeObject *)PyObject_GetAttrString(uuid, "UUID");
    Py_DECREF(uuid);
    if (uuid_type == NULL) {
        return NULL;
    }
    if (!PyType_Check(uuid_type)) {
        PyErr_SetString(PyExc_ImportError, "uuid.UUID is not a class");
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "MetaBase", (PyObject *)&MetaType) < 0 ||
        PyModule_AddObjectRef(module, "RecordBase", (PyObject *)&RecordType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
