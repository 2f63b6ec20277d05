// `shmpool call`: one call on a served pool, through a Client.
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>

#include "shmpool/client.h"
#include "tools/commands.h"

namespace shmpool::tools {
namespace {

std::optional<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int call(const CallOptions& o) {
  auto args = args_from_json(o.args);
  if (!args.ok()) {
    std::cerr << "shmpool call: --args is not valid JSON: " << args.error().to_string() << "\n";
    return 2;
  }
  std::vector<uint8_t> payload;
  if (!o.payload_file.empty()) {
    auto bytes = read_file(o.payload_file);
    if (!bytes) {
      std::cerr << "shmpool call: cannot read --payload " << o.payload_file << "\n";
      return 2;
    }
    payload = std::move(*bytes);
  }
  auto client = Client::attach(o.pool);
  if (!client.ok()) return fail(client.error());
  ExecOptions opt;
  opt.payload = payload;
  opt.operation_timeout = std::chrono::milliseconds(int64_t(o.timeout_s * 1000));
  auto r = o.session.empty() ? (*client)->execute_anonymous(o.command, *args, opt)
                             : (*client)->execute_in_session(o.session, o.command, *args, opt);
  if (!r.ok()) return fail(r.error());
  std::cout << r->json() << "\n";
  if (!r->payload().empty()) {
    if (o.payload_out.empty()) {
      std::cerr << "(reply payload: " << r->payload().size()
                << " bytes; --payload-out FILE keeps it)\n";
    } else {
      std::ofstream out(o.payload_out, std::ios::binary);
      out.write(reinterpret_cast<const char*>(r->payload().data()),
                std::streamsize(r->payload().size()));
      if (!out) {
        std::cerr << "shmpool call: cannot write " << o.payload_out << "\n";
        return 1;
      }
    }
  }
  return 0;
}

}  // namespace shmpool::tools
