#!/usr/bin/env bash
# Fault drills against the platform that `bash scripts/run.sh` started:
#   scripts/drill.sh SCENARIO|all|list|reset [--rate 5] [--duration S] [--fault-seconds S] ...
#   scripts/drill.sh soak --minutes M --rate R --seed S [...]   overlapping faults for minutes or hours,
#                                                                then a certificate (ops/soak/; --help)
# (`scripts/drill.sh list` names the scenarios; the logic is in ops/drills/.)
# Run it with the environment the platform was started with (same shell
# variables and .env): it finds the platform's ports, database and Redis the
# way run.sh does. Exit status 1 when an invariant was violated (soak: the certificate is not clean).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
load_dotenv "$ROOT"

[[ -x $ROOT/.venv/bin/python ]] || { echo "[drill] no .venv: start the platform with 'bash scripts/run.sh' first" >&2; exit 2; }
# The defaults of scripts/run.sh, so the drill addresses the platform it started.
platform_defaults
export PYTHON="$ROOT/.venv/bin/python"
export PYTHONUNBUFFERED=1
# The drill is no platform process: its metrics must not join the platform's.
unset PROMETHEUS_MULTIPROC_DIR

exec "$PYTHON" -m ops.drills "$@"
