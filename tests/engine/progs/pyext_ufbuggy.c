/*
 * A CPython extension module with the two bugs C extensions ship most:
 *   copy_name(s)  copies s with its terminating NUL into a buffer sized for
 *                 the characters only (off by one), frees it, returns the
 *                 buffer's address
 *   remember(s)   keeps a copy of s in a buffer that forget() frees, but the
 *                 module keeps the pointer
 *   recall()      reads the remembered buffer: after forget(), a
 *                 use-after-free read
 *   forget()
 * Buffers come from PyMem_Malloc, as extensions are told to use: with
 * PYTHONMALLOC=malloc (ufence run's default in full mode) that is malloc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static char *remembered;

/* The string argument with its NUL, in a buffer with room for the
 * characters and `nul_room` more bytes; NULL with an exception set. */
static char *copied(PyObject *args, size_t nul_room)
{
	const char *s;
	Py_ssize_t n;
	if (!PyArg_ParseTuple(args, "s#", &s, &n))
		return NULL;
	char *buf = PyMem_Malloc((size_t)n + nul_room);
	if (!buf)
		return (char *)PyErr_NoMemory();
	memcpy(buf, s, (size_t)n + 1);
	return buf;
}

static PyObject *copy_name(PyObject *self, PyObject *args)
{
	(void)self;
	char *buf = copied(args, 0);   /* the bug: no room for the NUL it copies */
	if (!buf)
		return NULL;
	PyObject *r = PyLong_FromVoidPtr(buf);
	PyMem_Free(buf);
	return r;
}

static PyObject *remember(PyObject *self, PyObject *args)
{
	(void)self;
	remembered = copied(args, 1);
	return remembered ? PyLong_FromVoidPtr(remembered) : NULL;
}

static PyObject *forget(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	PyMem_Free(remembered);   /* the pointer stays: the bug */
	Py_RETURN_NONE;
}

static PyObject *recall(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return PyLong_FromLong(((volatile char *)remembered)[0]);
}

static PyMethodDef methods[] = {
	{"copy_name", copy_name, METH_VARARGS, "off-by-one copy"},
	{"remember", remember, METH_VARARGS, "keep a copy"},
	{"forget", forget, METH_NOARGS, "free it, keep the pointer"},
	{"recall", recall, METH_NOARGS, "read it"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ufbuggy", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_ufbuggy(void)
{
	return PyModule_Create(&module);
}
