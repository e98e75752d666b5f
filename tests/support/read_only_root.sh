#!/bin/sh
# read_only_root.sh DIR... -- COMMAND [ARG...]
# Run inside `unshare --mount --propagation private` (tests/support/workloads.py does): the root
# filesystem is remounted read-only in this private mount namespace, except each DIR (the pod's
# writable volumes, bind-mounted onto themselves first), as a container with readOnlyRootFilesystem
# sees it. Nothing outside the namespace changes.
set -eu
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  mount --bind "$1" "$1"
  shift
done
shift
mount -o remount,bind,ro /
exec "$@"
