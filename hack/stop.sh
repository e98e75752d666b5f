#!/usr/bin/env bash
# `make stop`: stops the background servers that `make` started (Airflow, Superset, docs), and
# nothing else. Every such server records itself in .run/<name>.pid (and logs to .run/<name>.log);
# a pid is signalled only while its process still runs from this checkout, so a recycled pid or a
# server started by hand is never touched. MariaDB and PostgreSQL are system services and stay up.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ours() {  # the process runs a command or from a folder inside this checkout
  local pid="$1"
  [[ -d "/proc/$pid" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$ROOT" && return 0
  [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$ROOT"* ]]
}

shopt -s nullglob
pidfiles=("$RUN"/*.pid)
if ((${#pidfiles[@]} == 0)); then
  echo "stop: nothing running (no pid files in ${RUN#"$ROOT"/})"
  exit 0
fi
for f in "${pidfiles[@]}"; do
  name="$(basename "$f" .pid)"
  pid="$(pid_in "$f")"
  if [[ -n "$pid" ]] && ours "$pid"; then
    # the servers run as process-group leaders: stop the whole group (workers, gunicorn children)
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do ours "$pid" || break; sleep 0.25; done
    if ours "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
    echo "stop: $name (pid $pid) stopped"
  else
    echo "stop: $name was not running"
  fi
  rm -f "$f"
done
