#include "convert.h"

#include <cstring>
#include <string>

namespace shmpool::pyworker {

py::object flex_to_py(const flexbuffers::Reference& ref, const uint8_t* end, int64_t* budget,
                      int depth) {
  if (depth > kMaxDepth) throw py::value_error("args nested deeper than 64 levels");
  if (--*budget < 0) throw py::value_error("args hold more values than their size allows");
  switch (ref.GetType()) {
    case flexbuffers::FBT_NULL:
      return py::none();
    case flexbuffers::FBT_BOOL:
      return py::bool_(ref.AsBool());
    case flexbuffers::FBT_INT:
    case flexbuffers::FBT_INDIRECT_INT:
      return py::int_(ref.AsInt64());
    case flexbuffers::FBT_UINT:
    case flexbuffers::FBT_INDIRECT_UINT:
      return py::int_(ref.AsUInt64());
    case flexbuffers::FBT_FLOAT:
    case flexbuffers::FBT_INDIRECT_FLOAT:
      return py::float_(ref.AsDouble());
    case flexbuffers::FBT_KEY: {
      const char* k = ref.AsKey();
      const auto* p = reinterpret_cast<const uint8_t*>(k);
      const void* nul = p < end ? std::memchr(p, 0, size_t(end - p)) : nullptr;
      if (!nul) throw py::value_error("args hold a key without its terminating NUL");
      return py::reinterpret_steal<py::object>(
          PyUnicode_DecodeUTF8(k, py::ssize_t(static_cast<const uint8_t*>(nul) - p), "replace"));
    }
    case flexbuffers::FBT_STRING: {
      auto s = ref.AsString();
      return py::reinterpret_steal<py::object>(
          PyUnicode_DecodeUTF8(s.c_str(), s.length(), "replace"));
    }
    case flexbuffers::FBT_BLOB: {
      auto blob = ref.AsBlob();
      return py::bytes(reinterpret_cast<const char*>(blob.data()), blob.size());
    }
    case flexbuffers::FBT_MAP: {
      auto m = ref.AsMap();
      auto keys = m.Keys();
      auto values = m.Values();
      py::dict d;
      for (size_t i = 0; i < keys.size(); ++i) {
        d[flex_to_py(keys[i], end, budget, depth + 1)] =
            flex_to_py(values[i], end, budget, depth + 1);
      }
      return d;
    }
    default:
      break;
  }
  if (ref.IsVector() || ref.IsTypedVector() || ref.IsFixedTypedVector()) {
    auto v = ref.AsVector();
    py::list l(v.size());
    for (size_t i = 0; i < v.size(); ++i) l[i] = flex_to_py(v[i], end, budget, depth + 1);
    return l;
  }
  throw py::value_error("unsupported FlexBuffers type " + std::to_string(int(ref.GetType())));
}

namespace {
void put_int(ipc::FlexWriter& b, py::handle obj) {
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
  if (overflow == 0) {
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    b.Int(v);
    return;
  }
  if (overflow > 0) {
    unsigned long long u = PyLong_AsUnsignedLongLong(obj.ptr());
    if (!PyErr_Occurred()) {
      b.UInt(u);
      return;
    }
    PyErr_Clear();
  }
  throw py::type_error("int does not fit in 64 bits");
}

// A contiguous read-only view of a bytes-like object, released on scope exit.
struct ByteView {
  Py_buffer view{};
  explicit ByteView(PyObject* o) {
    if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  }
  ~ByteView() { PyBuffer_Release(&view); }
};
}  // namespace

void py_to_flex(ipc::FlexWriter& b, py::handle obj, int depth) {
  if (depth > kMaxDepth) throw py::value_error("result nested deeper than 64 levels");
  PyObject* o = obj.ptr();
  if (o == Py_None) {
    b.Null();
  } else if (PyBool_Check(o)) {
    b.Bool(o == Py_True);
  } else if (PyLong_Check(o)) {
    put_int(b, obj);
  } else if (PyFloat_Check(o)) {
    b.Double(PyFloat_AS_DOUBLE(o));
  } else if (PyUnicode_Check(o)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) throw py::error_already_set();
    b.String(s, size_t(n));
  } else if (PyBytes_Check(o) || PyByteArray_Check(o) || PyMemoryView_Check(o)) {
    ByteView v(o);
    b.Blob(v.view.buf, size_t(v.view.len));
  } else if (PyDict_Check(o)) {
    size_t start = b.StartMap();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (!PyUnicode_Check(k)) throw py::type_error("dict keys must be str");
      Py_ssize_t n = 0;
      const char* ks = PyUnicode_AsUTF8AndSize(k, &n);
      if (!ks) throw py::error_already_set();
      if (!b.Key(ks, size_t(n))) throw py::value_error("dict keys must not contain NUL characters");
      py_to_flex(b, v, depth + 1);
    }
    if (!b.EndMap(start)) throw py::value_error("dict keys must be distinct");
  } else if (PyList_Check(o) || PyTuple_Check(o)) {
    size_t start = b.StartVector();
    for (py::handle item : obj) py_to_flex(b, item, depth + 1);
    b.EndVector(start);
  } else if (PyObject_HasAttrString(o, "shape") && PyObject_HasAttrString(o, "tolist")) {
    // numpy scalars and arrays: via tolist() (0-d arrays become scalars).
    py::object plain = obj.attr("tolist")();
    if (plain.ptr() == o) throw py::type_error("tolist() returned itself");
    py_to_flex(b, plain, depth + 1);
  } else if (PyIndex_Check(o)) {
    put_int(b, py::reinterpret_steal<py::object>(PyNumber_Index(o)));
  } else if (PyObject_HasAttrString(o, "__float__")) {
    b.Double(py::cast<double>(py::reinterpret_steal<py::object>(PyNumber_Float(o))));
  } else {
    throw py::type_error(std::string("cannot send a value of type ") + Py_TYPE(o)->tp_name +
                         " (use dict, list, str, int, float, bool, None, bytes)");
  }
}

}  // namespace shmpool::pyworker
