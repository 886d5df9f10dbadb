#!/usr/bin/env bash
# Creates or updates the Python virtualenv used by tests/python and examples/python.
#
#   scripts/py-venv.sh            # venv at $REPO/.venv
#   MLOPS_VENV=/tmp/v scripts/py-venv.sh
#   MLOPS_VENV=.venv-triton MLOPS_VENV_REQUIREMENTS=tests/oip/requirements-triton.txt scripts/py-venv.sh
#
# Idempotent: the venv is created with `python3 -m venv` only when missing, and
# tests/python/requirements.txt is installed only when it changed since the last
# successful install (the venv keeps the file's sha256 in .requirements.sha256).
# A second run with nothing to do takes a few milliseconds.
#
# Environment: MLOPS_VENV (venv path), MLOPS_VENV_REQUIREMENTS (the requirements file,
# default tests/python/requirements.txt), PYTHON (interpreter to create it with,
# default python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLOPS_VENV:-$REPO/.venv}"
REQ="${MLOPS_VENV_REQUIREMENTS:-$REPO/tests/python/requirements.txt}"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

now() {
  # Seconds with a fraction; bash >= 5 has EPOCHREALTIME, older ones fall back to date.
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    echo "${EPOCHREALTIME/,/.}"
  else
    date +%s
  fi
}
start="$(now)"

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
  fi
}

[[ -f "$REQ" ]] || { echo "py-venv: $REQ not found" >&2; exit 1; }

actions=()

# A venv whose interpreter no longer runs (e.g. the base python was removed or
# upgraded in place) is rebuilt; only a directory that is really a venv is removed.
if [[ -e "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
  if [[ -f "$VENV/pyvenv.cfg" ]]; then
    rm -rf "$VENV"
    actions+=("removed broken venv")
  else
    echo "py-venv: $VENV exists but is not a working virtualenv; move it away or set MLOPS_VENV" >&2
    exit 1
  fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
  actions+=("created venv")
fi

want="$(sha256 "$REQ")"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
  # The pip that ships with the interpreter can be old; a current one resolves faster.
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
  # Written only after a successful install, atomically, so a failed or interrupted
  # install is retried next time.
  echo "$want" >"$STAMP.tmp"
  mv -f "$STAMP.tmp" "$STAMP"
  actions+=("installed $REQ")
fi

elapsed="$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')"
if ((${#actions[@]} == 0)); then
  echo "py-venv: $VENV up to date, nothing to do (${elapsed}s)"
else
  msg="$(IFS=';'; echo "${actions[*]}")"
  echo "py-venv: ${msg//;/, } in $VENV (${elapsed}s)"
fi
