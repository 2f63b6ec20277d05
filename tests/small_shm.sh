#!/bin/sh
# small_shm.sh SIZE HELPER SHMPOOL_CLI: runs the helper in a private mount
# namespace whose /dev/shm is a SIZE tmpfs (a default Docker container has
# 64m). Needs root (CI runs as root); skipped with exit 77 otherwise.
size=$1 helper=$2 cli=$3
if [ "$(id -u)" != 0 ]; then
  echo "skipped: a private /dev/shm needs root (unshare -m, mount)"
  exit 77
fi
if ! unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs /dev/shm' 2>/dev/null; then
  echo "skipped: this machine does not allow a private mount namespace"
  exit 77
fi
exec unshare -m sh -c 'mount -t tmpfs -o size="$1" tmpfs /dev/shm && exec "$2" "$3"' sh \
  "$size" "$helper" "$cli"
