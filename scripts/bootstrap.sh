#!/usr/bin/env bash
# Create .venv (if missing or broken) and install requirements-dev.txt into it,
# and the AsyncAPI parser (tools/asyncapi, npm) the contract test runs.
# The install is skipped while .venv/.requirements.sha matches the sha256 of
# requirements.txt + requirements-dev.txt. PYTHON3 picks the interpreter
# used to create the venv (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha"
BASE_PYTHON="${PYTHON3:-python3}"

for f in requirements.txt requirements-dev.txt; do
    [[ -f $f ]] || die "$f not found in $ROOT"
done

command -v "$BASE_PYTHON" >/dev/null 2>&1 \
    || die "$BASE_PYTHON not found; install Python 3.11+ (Debian: sudo apt-get install -y python3 python3-venv)"
"$BASE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "Python >= 3.10 is needed for Django 5.2; $BASE_PYTHON is $("$BASE_PYTHON" -V 2>&1)"

# A venv copied from another path or built by a removed interpreter does not run: rebuild it.
if [[ -e $VENV ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log ".venv is broken (its interpreter does not run); recreating it"
    rm -rf "$VENV"
fi

if [[ ! -x $VENV/bin/python ]]; then
    log "creating .venv with $("$BASE_PYTHON" -V 2>&1)"
    "$BASE_PYTHON" -m venv "$VENV" \
        || die "could not create .venv (Debian/Ubuntu: sudo apt-get install -y python3-venv)"
fi

sha_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1
    else
        cat requirements.txt requirements-dev.txt | shasum -a 256 | cut -d' ' -f1
    fi
}
want="$(sha_of)"

# The AsyncAPI document's validator (tests/messaging/test_contract_documents.py) is the official
# parser, a Node package: no PyPI package validates an AsyncAPI 3 document in full.
# Without npm only that test fails, with a hint; everything else still runs.
asyncapi_parser_install() {
    local dir="$ROOT/tools/asyncapi" stamp lock_sha
    if ! command -v npm >/dev/null 2>&1; then
        log "WARNING: npm not found, so the AsyncAPI parser is not installed (Debian: sudo apt-get install -y nodejs npm)"
        return 0
    fi
    stamp="$dir/node_modules/.package-lock.sha"
    if command -v sha256sum >/dev/null 2>&1; then
        lock_sha="$(sha256sum <"$dir/package-lock.json" | cut -d' ' -f1)"
    else
        lock_sha="$(shasum -a 256 <"$dir/package-lock.json" | cut -d' ' -f1)"
    fi
    if [[ -f $stamp && $(cat "$stamp") == "$lock_sha" ]]; then
        return 0
    fi
    log "installing the AsyncAPI parser into tools/asyncapi (npm ci)"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null) \
        || die "npm ci in tools/asyncapi failed"
    printf '%s\n' "$lock_sha" >"$stamp"
}
asyncapi_parser_install

if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
    log "requirements up to date (.venv/.requirements.sha matches)"
    exit 0
fi

log "installing requirements-dev.txt into .venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install --quiet -r requirements-dev.txt </dev/null \
    || die "pip install -r requirements-dev.txt failed"
printf '%s\n' "$want" >"$STAMP"
log "done"
