// errc.h: the cheap error codes ipc/ returns. pool/ turns them into the
// structured shmpool::Error (category, type, message, context).
#pragma once

#include <cstdint>
#include <string_view>

namespace shmpool::ipc {

enum class Errc : uint8_t {
  ok = 0,
  empty,            // nothing to read (non-blocking peek)
  timed_out,        // deadline passed while waiting
  ring_full,        // no room for the frame before the deadline
  frame_too_large,  // frame can never fit in this ring
  corrupt,          // shared memory failed a bounds or format check
  peer_dead,        // the process on the other side is gone
  bad_name,         // segment name rejected
  bad_magic,        // not a shmpool segment
  bad_version,      // layout version mismatch
  bad_layout,       // sizes in the header disagree with the segment
  exists,           // segment already exists
  not_found,        // segment does not exist
  no_space,         // /dev/shm cannot hold the segment
  permission,       // access denied
  system,           // another syscall failure (see the accompanying SysError)
};

constexpr std::string_view errc_name(Errc e) {
  switch (e) {
    case Errc::ok:
      return "ok";
    case Errc::empty:
      return "empty";
    case Errc::timed_out:
      return "timed_out";
    case Errc::ring_full:
      return "ring_full";
    case Errc::frame_too_large:
      return "frame_too_large";
    case Errc::corrupt:
      return "corrupt";
    case Errc::peer_dead:
      return "peer_dead";
    case Errc::bad_name:
      return "bad_name";
    case Errc::bad_magic:
      return "bad_magic";
    case Errc::bad_version:
      return "bad_version";
    case Errc::bad_layout:
      return "bad_layout";
    case Errc::exists:
      return "exists";
    case Errc::not_found:
      return "not_found";
    case Errc::no_space:
      return "no_space";
    case Errc::permission:
      return "permission";
    case Errc::system:
      return "system";
  }
  return "unknown";
}

}  // namespace shmpool::ipc
