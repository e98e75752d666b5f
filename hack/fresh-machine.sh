#!/usr/bin/env bash
# `make test-fresh`: the README's two commands on a brand-new Debian 12, as a new user would run them.
#
# Builds a minimal Debian bookworm root (debootstrap --variant=minbase) holding only python3, git,
# make and ca-certificates, clones this repository's committed HEAD into it, and runs `make demo`
# and then `make test` there with chroot, as root, with an empty environment. Prints how long each
# took and the tail of its log; exits non-zero if either fails. Logs stay in $FRESH_DIR/logs.
#
# The root's services must own ports 3306 and 5432, which the host's MariaDB and PostgreSQL hold:
#   FRESH_NET=netns (default)  the root runs in its own network namespace (its own loopback), so the
#                              host's servers keep running untouched. Package registries are reached
#                              through Debian's tinyproxy on the namespace's host side (the root's
#                              only network; http_proxy/https_proxy are set for the commands).
#   FRESH_NET=host             the root shares the host's network: the host's servers on 3306/5432
#                              are stopped while it runs and started again afterwards.
# Either way only the processes started inside the root (and the proxy) are ended, by pid.
#
# Settings: FRESH_DIR (default .cache/fresh), FRESH_MIRROR, FRESH_REBUILD=1 (new base root),
# FRESH_REF (what to clone, default HEAD), FRESH_COMMANDS (default "demo test").
set -euo pipefail

LOG_NAME=fresh
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FRESH_DIR="${FRESH_DIR:-$ROOT/.cache/fresh}"
MIRROR="${FRESH_MIRROR:-http://deb.debian.org/debian}"
FRESH_NET="${FRESH_NET:-netns}"
FRESH_REF="${FRESH_REF:-HEAD}"
COMMANDS="${FRESH_COMMANDS:-demo test}"
TAIL_LINES="${FRESH_TAIL_LINES:-25}"
BASE="$FRESH_DIR/base"
RD="$FRESH_DIR/root"
LOGS="$FRESH_DIR/logs"
# what the README says a fresh machine needs (the README's quickstart names the same list)
PACKAGES=python3,git,make,ca-certificates
NS=retailflow-fresh
HOST_IP=10.231.0.1
NS_IP=10.231.0.2
PROXY_PORT=3128

[[ "$(id -u)" == 0 ]] || die "run as root (debootstrap, chroot and network namespaces need it)"
case "$FRESH_NET" in netns|host) ;; *) die "FRESH_NET must be netns or host, not '$FRESH_NET'" ;; esac

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
if [[ "$FRESH_NET" == netns ]]; then
  command -v tinyproxy >/dev/null || need+=(tinyproxy)
  command -v ip >/dev/null || need+=(iproute2)
fi
if ((${#need[@]})); then
  log "installing ${need[*]} (apt)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$FRESH_DIR" "$LOGS"
started_proxy="" restore_mysql="" restore_pg=() mounted=()

root_pids() {  # every process whose root directory is the fresh root
  local p
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/root" 2>/dev/null)" == "$RD" ]] && echo "${p#/proc/}"
  done
  return 0
}

cleanup() {
  local rc=$? pids
  pids="$(root_pids)"
  if [[ -n "$pids" ]]; then
    log "ending the $(wc -w <<<"$pids") processes started inside the root"
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 40); do [[ -z "$(root_pids)" ]] && break; sleep 0.25; done
    pids="$(root_pids)"; [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
  fi
  local m
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m="${mounted[i]}"; umount -l "$m" 2>/dev/null || true
  done
  if [[ -n "$started_proxy" ]]; then kill "$started_proxy" 2>/dev/null || true; fi
  if [[ "$FRESH_NET" == netns ]]; then
    ip netns del "$NS" 2>/dev/null || true
    ip link del "${NS:0:10}-h" 2>/dev/null || true
  fi
  if [[ -n "$restore_mysql" ]]; then
    log "starting the host's MariaDB again"
    # shellcheck disable=SC2086  # the recorded command line, split as it was
    start-stop-daemon --start --oknodo --background --exec ${restore_mysql%% *} -- ${restore_mysql#* } || true
  fi
  for c in "${restore_pg[@]}"; do
    log "starting the host's PostgreSQL $c again"
    pg_ctlcluster ${c/\// } start || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the minimal root
if [[ -n "${FRESH_REBUILD:-}" || ! -x "$BASE/usr/bin/python3" ]]; then
  log "building a minimal Debian bookworm root ($PACKAGES) with debootstrap"
  rm -rf "$BASE.part"
  t0=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$BASE.part" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
    || { tail -n "$TAIL_LINES" "$LOGS/debootstrap.log" >&2; die "debootstrap failed (log: $LOGS/debootstrap.log)"; }
  rm -rf "$BASE"; mv "$BASE.part" "$BASE"
  log "base root built in $((SECONDS - t0)) s"
fi
log "copying the base root to $RD"
[[ -z "$(root_pids)" ]] || die "processes still run inside $RD; end them first"
rm -rf "$RD"
cp -a "$BASE" "$RD"
cp /etc/resolv.conf "$RD/etc/resolv.conf"
# This machine's network trust comes along (not the project's): registries may be reached through a
# TLS-intercepting egress whose CA the host added locally, and the host points tools at its bundle.
trust_env=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$RD/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$RD/usr/local/share/ca-certificates/"
  chroot "$RD" update-ca-certificates >/dev/null 2>&1 || true
fi
for v in SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE GIT_SSL_CAINFO NODE_EXTRA_CA_CERTS; do
  [[ -n "${!v:-}" ]] && trust_env+=("$v=${!v}")
done
printf '127.0.0.1 localhost\n::1 localhost\n' >"$RD/etc/hosts"

git -C "$ROOT" rev-parse --verify -q "$FRESH_REF" >/dev/null || die "no commit '$FRESH_REF' to clone"
log "cloning $(git -C "$ROOT" rev-parse --short "$FRESH_REF") into the root"
git clone --quiet --no-hardlinks "$ROOT" "$RD/root/retailflow"
git -C "$RD/root/retailflow" checkout --quiet --detach "$(git -C "$ROOT" rev-parse "$FRESH_REF")"

# A machine's / is a mount point; a chroot's is not until it is bound onto itself. The workloads
# suite's read-only root (tests/support/read_only_root.sh, in `unshare --propagation private`) needs one.
mount --bind "$RD" "$RD"; mounted+=("$RD")
for m in proc sys dev dev/pts; do
  mkdir -p "$RD/$m"
  case "$m" in
    proc) mount -t proc proc "$RD/proc" ;;
    *) mount --rbind "/$m" "$RD/$m" ;;
  esac
  mounted+=("$RD/$m")
done
mkdir -p "$RD/dev/shm"; mount -t tmpfs -o mode=1777 shm "$RD/dev/shm"; mounted+=("$RD/dev/shm")

# ---------------------------------------------------------------- the network
net=()
proxy_env=()
if [[ "$FRESH_NET" == netns ]]; then
  ip netns del "$NS" 2>/dev/null || true
  ip link del "${NS:0:10}-h" 2>/dev/null || true
  ip netns add "$NS"
  ip link add "${NS:0:10}-h" type veth peer name "${NS:0:10}-n"
  ip link set "${NS:0:10}-n" netns "$NS"
  ip addr add "$HOST_IP/30" dev "${NS:0:10}-h"; ip link set "${NS:0:10}-h" up
  ip netns exec "$NS" ip addr add "$NS_IP/30" dev "${NS:0:10}-n"
  ip netns exec "$NS" ip link set "${NS:0:10}-n" up
  ip netns exec "$NS" ip link set lo up
  cat >"$FRESH_DIR/tinyproxy.conf" <<CONF
Port $PROXY_PORT
Listen $HOST_IP
Timeout 600
MaxClients 200
Allow $NS_IP
ConnectPort 443
ConnectPort 80
LogLevel Warning
LogFile "$LOGS/proxy.log"
CONF
  tinyproxy -d -c "$FRESH_DIR/tinyproxy.conf" >>"$LOGS/proxy.log" 2>&1 &
  started_proxy=$!
  for _ in $(seq 1 40); do (exec 3<>"/dev/tcp/$HOST_IP/$PROXY_PORT") 2>/dev/null && break; sleep 0.25; done
  net=(ip netns exec "$NS")
  proxy="http://$HOST_IP:$PROXY_PORT"
  proxy_env=("http_proxy=$proxy" "https_proxy=$proxy" "HTTP_PROXY=$proxy" "HTTPS_PROXY=$proxy"
             "no_proxy=localhost,127.0.0.1,::1" "NO_PROXY=localhost,127.0.0.1,::1")
  log "the root runs in network namespace $NS; registries through tinyproxy at $proxy"
else
  if mysqladmin --protocol=tcp -h127.0.0.1 ping >/dev/null 2>&1; then
    pid="$(pgrep -xo mariadbd || pgrep -xo mysqld || true)"
    [[ -n "$pid" ]] || die "something answers on 3306 that is not a local mariadbd; stop it first"
    restore_mysql="$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed 's/ $//')"
    log "stopping the host's MariaDB (pid $pid) for the run"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do [[ -d "/proc/$pid" ]] || break; sleep 0.25; done
  fi
  while read -r ver name _ status _; do
    [[ "$status" == online ]] || continue
    log "stopping the host's PostgreSQL $ver/$name for the run"
    pg_ctlcluster "$ver" "$name" stop
    restore_pg+=("$ver/$name")
  done < <(pg_lsclusters -h 2>/dev/null || true)
fi

# ---------------------------------------------------------------- the README's commands
in_root() {
  "${net[@]}" chroot "$RD" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${proxy_env[@]}" "${trust_env[@]}" \
    /bin/bash -c "cd /root/retailflow && $1"
}

status=0
summary=()
for cmd in $COMMANDS; do
  log "make $cmd (log: $LOGS/make-$cmd.log)"
  t0=$SECONDS
  if in_root "make $cmd" >"$LOGS/make-$cmd.log" 2>&1; then rc=0; else rc=$?; fi
  took=$((SECONDS - t0))
  printf -- '---- make %s: last %s lines ----\n' "$cmd" "$TAIL_LINES"
  tail -n "$TAIL_LINES" "$LOGS/make-$cmd.log"
  summary+=("make $cmd: exit $rc in $((took / 60)) min $((took % 60)) s")
  if ((rc != 0)); then status=1; break; fi
done
printf -- '---- fresh Debian bookworm root ----\n'
printf '%s\n' "${summary[@]}"
exit "$status"
