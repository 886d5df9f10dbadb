# Shared helpers for the test and bench scripts: install and start what they need.
# Source it; it defines functions and sets nothing else.

TANSU_VERSION=0.6.0

log() { printf '==> %s\n' "$*" >&2; }

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections (up to $2 seconds).
wait_port() {
  local port=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$port)))" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Makes sure PostgreSQL answers on 127.0.0.1:5432, starting the local cluster if needed.
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  log "PostgreSQL is down; starting the local cluster"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
    sleep 0.2
  done
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; install and start it (see README, Testing)" >&2
  return 1
}

# Drops databases left behind by earlier integration-test runs.
drop_test_databases() {
  local url=$1
  psql "$url" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'mlops_it_%'" 2>/dev/null |
    while read -r db; do psql "$url" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
}

# Installs tansu $TANSU_VERSION with cargo if it is missing or another version.
ensure_tansu() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q " $TANSU_VERSION"; then return 0; fi
  log "installing tansu $TANSU_VERSION (a Kafka-protocol broker; about 10 minutes on 2 cores, once)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
}

# Installs Miri on the nightly toolchain if it is missing: `make miri` runs the tests of
# crates/dense, the one crate with `unsafe` (its AVX-512 and AVX2 kernels), under Miri.
ensure_miri() {
  if cargo +nightly miri --version >/dev/null 2>&1; then return 0; fi
  log "installing Miri on the nightly toolchain (once)"
  if rustup toolchain list | grep -q '^nightly'; then
    # add to the nightly that is there rather than update it
    rustup component add --toolchain nightly miri rust-src
  else
    rustup toolchain install nightly --profile minimal --component miri,rust-src
  fi
}

# Installs Debian's chromium with apt-get if it is missing: tests/python/test_monitoring.py
# opens `mlops monitor report --html`'s page in headless Chromium to check that it renders,
# charts included (a string check on the file cannot see a page the browser rejects).
ensure_chromium() {
  if command -v chromium >/dev/null; then return 0; fi
  log "installing chromium (headless, for the HTML report test; once)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  [ "$(id -u)" -eq 0 ] || apt=(sudo "${apt[@]}")
  # Quiet (-qq, stdout dropped) but errors still reach stderr. An image without an apt
  # index, or with a stale one, fails the install: update the index and retry once.
  if ! "${apt[@]}" install -y -qq --no-install-recommends chromium >/dev/null; then
    "${apt[@]}" update -qq >/dev/null
    "${apt[@]}" install -y -qq --no-install-recommends chromium >/dev/null
  fi
  command -v chromium >/dev/null || { echo "chromium is still not on PATH after apt-get install" >&2; return 1; }
}

# Starts tansu with in-memory storage on a free port, in its own temp dir (it reads
# .env from its working directory). Sets TANSU_PID, TANSU_BROKERS, TANSU_DIR.
start_tansu() {
  local port
  port=$(free_port)
  TANSU_DIR=$(mktemp -d)
  (cd "$TANSU_DIR" && env -u OTEL_EXPORTER_OTLP_ENDPOINT tansu broker \
      --storage-engine memory://tansu/ \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" >"$TANSU_DIR/tansu.log" 2>&1) &
  TANSU_PID=$!
  if ! wait_port "$port" 30; then
    echo "tansu did not start; its log:" >&2
    cat "$TANSU_DIR/tansu.log" >&2
    return 1
  fi
  # the subshell's child is the broker: signal that process, not the subshell
  local child
  child=$(pgrep -P "$TANSU_PID" tansu || true)
  [ -n "$child" ] && TANSU_PID=$child
  TANSU_BROKERS="127.0.0.1:$port"
  log "tansu $TANSU_VERSION on $TANSU_BROKERS (pid $TANSU_PID)"
}

stop_tansu() {
  if [ -n "${TANSU_PID:-}" ]; then
    kill -CONT "$TANSU_PID" 2>/dev/null || true
    kill "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
  fi
  [ -n "${TANSU_DIR:-}" ] && rm -rf "$TANSU_DIR"
  return 0
}
