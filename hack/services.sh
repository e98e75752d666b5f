#!/usr/bin/env bash
# Local services for RetailFlow's local mode and tests: MariaDB (the MySQL orders source) and
# PostgreSQL (the warehouse). Installs what is missing (as root, Debian/Ubuntu), starts what is
# stopped, and creates the `retail` and `warehouse` databases with their own users and generated
# passwords, kept in .env.local (git-ignored). Idempotent: a second run changes nothing.
#
# If RETAILFLOW_MYSQL_URL and RETAILFLOW_WAREHOUSE_URL are both set, those servers are used as they
# are: nothing is installed, started or written.
set -euo pipefail

LOG_NAME=services
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/hack/env.sh"
MYSQL_DB=retail
MYSQL_USER=retail
PG_DB=warehouse
PG_USER=warehouse
# Every path below is absolute. Commands run as the postgres or mysql user start in the current
# folder, which they may not be allowed to read (a checkout under /root): work from / instead.
cd /

if [[ -n "${RETAILFLOW_MYSQL_URL:-}" && -n "${RETAILFLOW_WAREHOUSE_URL:-}" ]]; then
  log "using external servers from RETAILFLOW_MYSQL_URL and RETAILFLOW_WAREHOUSE_URL; nothing installed"
  exit 0
fi

is_root() { [[ "$(id -u)" == 0 ]]; }
mariadbd_bin() { command -v mariadbd || { [[ -x /usr/sbin/mariadbd ]] && echo /usr/sbin/mariadbd; } || true; }
pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1; }

# ---------------------------------------------------------------- install what is missing
missing=()
[[ -n "$(mariadbd_bin)" ]] || missing+=(mariadb-server)
command -v mysql >/dev/null || missing+=(mariadb-client)
[[ -n "$(pg_version)" ]] || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
# mysql_config / pkg-config: headers for Python packages that build the MySQL client library
command -v mysql_config >/dev/null || missing+=(default-libmysqlclient-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v gcc >/dev/null || missing+=(build-essential)
# make uv bootstraps uv in a virtual environment; Debian ships venv and ensurepip apart from python3
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# headless browser for the Airflow and Superset UI tests and the screenshots under docs/
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)

if ((${#missing[@]})); then
  if ! is_root; then
    die "missing packages: ${missing[*]}
  install them with:  sudo apt-get install -y ${missing[*]}
  or point RetailFlow at existing servers:
    export RETAILFLOW_MYSQL_URL=mysql://USER:PASSWORD@HOST:PORT/retail
    export RETAILFLOW_WAREHOUSE_URL=postgresql://USER:PASSWORD@HOST:PORT/warehouse"
  fi
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} with your package manager"
  log "installing ${missing[*]} (apt)"
  # Debian's maintainer scripts try to start services; policy-rc.d may refuse that, which is fine:
  # the servers are started below.
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The servers' ports, from RetailFlow's catalog (python3 is there once the packages are)
MYSQL_PORT="$(catalog_port mysql)"
PG_PORT="$(catalog_port postgresql)"

# ---------------------------------------------------------------- start MariaDB
mysql_root() {
  is_root || die "cannot create the MySQL database and user without root; create database '$MYSQL_DB' and user '$MYSQL_USER', or set RETAILFLOW_MYSQL_URL"
  mysql --protocol=socket -uroot "$@"
}
# ping answers 0 whenever the server is up, even if this user may not log in
mysql_alive() { mysqladmin --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" ping >/dev/null 2>&1; }
if ! mysql_alive; then
  is_root || die "MariaDB is installed but not running; start it (e.g. sudo service mariadb start) and run again"
  log "starting MariaDB"
  install -d -o mysql -g mysql /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  # a 1 GiB buffer pool keeps seeding and ingesting the benchmark's millions of rows off the disk
  # matched by its own pid file, not by executable: a mariadbd of another root (a chroot, a
  # container sharing the pid namespace) must not count as this one
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile /run/mysqld/retailflow-mariadbd.pid \
    --exec "$(mariadbd_bin)" -- --user=mysql --innodb-buffer-pool-size=1G
  for _ in $(seq 1 60); do mysql_alive && break; sleep 0.5; done
  mysql_alive || die "MariaDB did not come up within 30 s (see /var/log/mysql/error.log)"
fi

# ---------------------------------------------------------------- start PostgreSQL
if ! pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
  is_root || die "PostgreSQL is installed but not running; start it (e.g. sudo pg_ctlcluster $(pg_version) main start) and run again"
  ver="$(pg_version)"
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
    log "creating PostgreSQL $ver cluster"
    pg_createcluster "$ver" main >/dev/null
  fi
  log "starting PostgreSQL $ver"
  pg_ctlcluster "$ver" main start
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.5; done
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL did not come up within 30 s"
fi

# ---------------------------------------------------------------- users, databases, env file
url_password() { sed -E 's#^[a-z]+://[^:]+:([^@]*)@.*#\1#' <<<"$1"; }

mysql_pw="$(url_password "$(env_get RETAILFLOW_MYSQL_URL)")"
pg_pw="$(url_password "$(env_get RETAILFLOW_WAREHOUSE_URL)")"
[[ -n "$mysql_pw" ]] || mysql_pw="$(new_password)"
[[ -n "$pg_pw" ]] || pg_pw="$(new_password)"

# Passwords never go on a command line (visible in ps): MYSQL_PWD / PGPASSWORD in the environment,
# SQL on stdin.
if ! MYSQL_PWD="$mysql_pw" mysql --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -u"$MYSQL_USER" -e "use $MYSQL_DB" >/dev/null 2>&1; then
  log "creating MySQL database '$MYSQL_DB' and user '$MYSQL_USER' (or setting its password)"
  mysql_root <<SQL
create database if not exists \`$MYSQL_DB\` character set utf8mb4;
create user if not exists '$MYSQL_USER'@'%' identified by '$mysql_pw';
alter user '$MYSQL_USER'@'%' identified by '$mysql_pw';
grant all privileges on \`$MYSQL_DB\`.* to '$MYSQL_USER'@'%';
-- tests create and drop their own throwaway databases named retail_<something>
grant all privileges on \`${MYSQL_DB}\\_%\`.* to '$MYSQL_USER'@'%';
flush privileges;
SQL
fi

if ! PGPASSWORD="$pg_pw" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qAtXc 'select 1' >/dev/null 2>&1; then
  is_root || die "cannot create the PostgreSQL role and database without root; create role '$PG_USER' (login createdb) and database '$PG_DB', or set RETAILFLOW_WAREHOUSE_URL"
  log "creating PostgreSQL database '$PG_DB' and role '$PG_USER' (or setting its password)"
  pg_ensure_role_db "$PG_USER" "$PG_DB" "$pg_pw" createdb
fi

mysql_url="mysql://$MYSQL_USER:$mysql_pw@127.0.0.1:$MYSQL_PORT/$MYSQL_DB"
pg_url="postgresql://$PG_USER:$pg_pw@127.0.0.1:$PG_PORT/$PG_DB"
if [[ "$(env_get RETAILFLOW_MYSQL_URL)" != "$mysql_url" || "$(env_get RETAILFLOW_WAREHOUSE_URL)" != "$pg_url" ]]; then
  log "writing ${ENV_FILE#"$ROOT"/} (generated passwords; git-ignored)"
  env_set RETAILFLOW_MYSQL_URL "$mysql_url"
  env_set RETAILFLOW_WAREHOUSE_URL "$pg_url"
fi

log "ready: MariaDB $MYSQL_DB and PostgreSQL $PG_DB on 127.0.0.1 (credentials in ${ENV_FILE#"$ROOT"/})"
