// `shmpool call`: one call on a served pool, through a Client; with
// --stream, a streaming call whose items are printed as JSON lines as they
// come (Ctrl-C cancels it: exit 130).
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <span>

#include "shmpool/client.h"
#include "tools/commands.h"

namespace shmpool::tools {
namespace {

std::optional<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

volatile sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

// Appends a payload to --payload-out (or says it was dropped). False on a write error.
bool keep_payload(const CallOptions& o, std::span<const uint8_t> payload, bool append) {
  if (payload.empty()) return true;
  if (o.payload_out.empty()) {
    std::cerr << "(reply payload: " << payload.size() << " bytes; --payload-out FILE keeps it)\n";
    return true;
  }
  std::ofstream out(o.payload_out, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
  out.write(reinterpret_cast<const char*>(payload.data()), std::streamsize(payload.size()));
  if (!out) std::cerr << "shmpool call: cannot write " << o.payload_out << "\n";
  return bool(out);
}

int stream(Client& client, const CallOptions& o, const Args& args, const ExecOptions& opt) {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  ::sigaction(SIGINT, &sa, nullptr);
  Stream s = client.stream(o.session, o.command, args, opt);
  bool cancelled = false;
  for (;;) {
    if (g_interrupted && !cancelled) cancelled = s.cancel();
    auto next = s.next(std::chrono::milliseconds(100));
    if (!next.ok() && next.error().type == "next_timeout") continue;
    if (!next.ok()) {
      if (next.error().category == Category::cancelled && g_interrupted) {
        std::cerr << "shmpool call: cancelled\n";
        return 130;
      }
      return fail(next.error());
    }
    if (!next.value()) return 0;  // the end
    const Reply& item = *next.value();
    std::cout << item.json() << std::endl;  // one line per item, as it comes
    if (!keep_payload(o, item.payload(), true)) return 1;
  }
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
  if (o.stream) {
    if (!o.payload_out.empty()) std::ofstream(o.payload_out, std::ios::trunc);  // items append
    return stream(**client, o, *args, opt);
  }
  auto r = o.session.empty() ? (*client)->execute_anonymous(o.command, *args, opt)
                             : (*client)->execute_in_session(o.session, o.command, *args, opt);
  if (!r.ok()) return fail(r.error());
  std::cout << r->json() << "\n";
  return keep_payload(o, r->payload(), false) ? 0 : 1;
}

}  // namespace shmpool::tools
