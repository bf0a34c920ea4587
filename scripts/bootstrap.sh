#!/usr/bin/env bash
# Everything activity-cdc needs on a fresh machine: PostgreSQL server binaries (for the
# embedded throwaway cluster) and a virtualenv in .venv with the package and its test tools.
# Idempotent; safe to run before every command.
set -euo pipefail
cd "$(dirname "$0")/.."

have_server() {
    [ -n "${CDC_PG_BINDIR:-}" ] && [ -x "${CDC_PG_BINDIR}/initdb" ] && return 0
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
    command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
    return 1
}

if ! have_server; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing PostgreSQL server binaries (apt-get install postgresql)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "bootstrap: no PostgreSQL server binaries (initdb) found; install the PostgreSQL" \
             "server package or set CDC_PG_BINDIR" >&2
        exit 1
    fi
fi

# The JetStream sink's tests start their own NATS cluster from the nats-server binary.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ] \
        && [ -z "${CDC_NATS_SERVER:-}" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing nats-server (for the JetStream tests)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    else
        echo "bootstrap: nats-server not found; install Debian's nats-server package or set" \
             "CDC_NATS_SERVER (the JetStream tests need it)" >&2
        exit 1
    fi
fi

# The benchmark's Python peer (pypgoutput) needs psycopg2, which builds from source against libpq:
# it needs pg_config and a C compiler.
if ! command -v pg_config >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing libpq-dev and gcc (to build psycopg2 for the benchmarks)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpq-dev gcc >/dev/null
    fi
fi

# The web pages' end-to-end tests drive Debian's headless Chromium through Playwright
# (executable_path=/usr/bin/chromium); Playwright itself never downloads a browser.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing chromium (the browser tests of the web pages)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "bootstrap: no chromium; the browser tests (tests/web/test_browser.py) will fail:" \
             "install Debian's chromium package" >&2
    fi
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,bench]" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }

# Extensions the type-fidelity tests need on the primary server (the one the test fixture
# starts: cdc.demo.embedded.find_bindir): hstore, citext and ltree come with the server
# (contrib); PostGIS is a package of its own, for the server's major version. pgvector is
# installed where the distribution has it for that version (the tests for it run only on
# servers that ship it).
PRIMARY_BINDIR="$(.venv/bin/python -c 'from cdc.demo.embedded import find_bindir; print(find_bindir())')"
PG_MAJOR="$("$PRIMARY_BINDIR/postgres" --version | grep -oE '[0-9]+' | head -1)"
PG_SHAREDIR="$("$PRIMARY_BINDIR/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$PG_MAJOR")"
if [ ! -f "$PG_SHAREDIR/extension/postgis.control" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing PostGIS for PostgreSQL $PG_MAJOR (postgresql-$PG_MAJOR-postgis-3)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$PG_MAJOR-postgis-3" >/dev/null
    else
        echo "bootstrap: PostGIS is not installed for PostgreSQL $PG_MAJOR ($PG_SHAREDIR);" \
             "install postgresql-$PG_MAJOR-postgis-3 (the type-fidelity tests need it)" >&2
        exit 1
    fi
fi
if [ ! -f "$PG_SHAREDIR/extension/vector.control" ] && [ "$(id -u)" = "0" ] \
        && command -v apt-get >/dev/null 2>&1; then
    if apt-cache show "postgresql-$PG_MAJOR-pgvector" >/dev/null 2>&1; then
        echo "bootstrap: installing pgvector for PostgreSQL $PG_MAJOR" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$PG_MAJOR-pgvector" >/dev/null
    fi
fi
