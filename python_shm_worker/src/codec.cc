// The envelope for message transports (the ZeroMQ benchmark peer,
// python_shm_worker/zmq_ipc.py): the same FlatBuffers Request/Response as
// over shared memory, decoded and encoded here in C++.
#include <string>
#include <vector>

#include "convert.h"
#include "ipc/flex_writer.h"
#include "register.h"
#include "shmpool/schema/envelope_generated.h"

namespace shmpool::pyworker {

namespace {
namespace schema = shmpool::schema;

// (id, session_id, command, args, body) of a verified Request.
py::tuple decode_request(py::buffer buf) {
  py::buffer_info info = buf.request();
  const auto* p = static_cast<const uint8_t*>(info.ptr);
  const auto n = size_t(info.size * info.itemsize);
  flatbuffers::Verifier verifier(p, n);
  if (!verifier.VerifyBuffer<schema::Request>(nullptr))
    throw py::value_error("request envelope failed verification");
  const auto* r = flatbuffers::GetRoot<schema::Request>(p);
  py::object session = r->session_id() && r->session_id()->size()
                           ? py::object(py::str(r->session_id()->str()))
                           : py::object(py::none());
  int64_t budget = r->args() ? int64_t(r->args()->size()) + 16 : 0;
  py::object args =
      r->args() && r->args()->size()
          ? flex_to_py(r->args_flexbuffer_root(), r->args()->data() + r->args()->size(), &budget)
          : py::object(py::dict());
  py::bytes body =
      r->body() ? py::bytes(reinterpret_cast<const char*>(r->body()->data()), r->body()->size())
                : py::bytes();
  return py::make_tuple(r->id(), session, r->command() ? r->command()->str() : "", args, body);
}

// A Response envelope: Ok with `value`, or Error from (category, type,
// message, context).
py::bytes encode_response(uint64_t id, py::handle value, py::object error) {
  flatbuffers::FlatBufferBuilder fbb(256);
  if (!error.is_none()) {
    auto e = error.cast<py::tuple>();  // (category, type, message, {context})
    std::vector<flatbuffers::Offset<schema::KeyValue>> kvs;
    for (auto kv : e[3].cast<py::dict>()) {
      kvs.push_back(schema::CreateKeyValueDirect(fbb, py::str(kv.first).cast<std::string>().c_str(),
                                                 py::str(kv.second).cast<std::string>().c_str()));
    }
    auto err = schema::CreateErrorDirect(fbb, e[0].cast<std::string>().c_str(),
                                         e[1].cast<std::string>().c_str(),
                                         e[2].cast<std::string>().c_str(), &kvs);
    schema::ResponseBuilder b(fbb);
    b.add_id(id);
    b.add_status(schema::Status::Error);
    b.add_error(err);
    fbb.Finish(b.Finish());
  } else {
    ipc::FlexWriter flex(256);
    py_to_flex(flex, value);
    flex.Finish();
    auto result = fbb.CreateVector(flex.data(), flex.size());
    schema::ResponseBuilder b(fbb);
    b.add_id(id);
    b.add_status(schema::Status::Ok);
    b.add_result(result);
    fbb.Finish(b.Finish());
  }
  return py::bytes(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}
}  // namespace

void register_codec(py::module_& m) {
  m.def("decode_request", &decode_request, py::arg("envelope"),
        "(id, session_id, command, args, body) of a verified Request.");
  m.def("encode_response", &encode_response, py::arg("id"), py::arg("value"),
        py::arg("error") = py::none(),
        "A Response envelope: Ok with `value`, or Error from (category, type, message, context).");
}

}  // namespace shmpool::pyworker
