#!/usr/bin/env bash
# Shared by the scripts in this folder: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.

# Export KEY=VALUE lines of .env that are not already set (the environment wins).
load_dotenv() {
    local file="$1/.env" line key val
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line="${line%$'\r'}"
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key="${BASH_REMATCH[2]}"
        val="${BASH_REMATCH[3]}"
        if [[ $val =~ ^\"(.*)\"$ || $val =~ ^\'(.*)\'$ ]]; then val="${BASH_REMATCH[1]}"; fi
        [[ -n $val && -z ${!key+x} ]] || continue
        export "$key=$val"
    done <"$file"
}

# Make COMMAND available, installing the Debian PACKAGES that provide it when
# it is missing (as root, or through `sudo -n`); fail with what to run otherwise.
#   debian_ensure COMMAND PACKAGE...
debian_ensure() {
    local command="$1"
    shift
    command -v "$command" >/dev/null 2>&1 && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            printf 'ERROR: %s is missing. Install it:   sudo apt-get install -y %s\n' "$command" "$*" >&2
            return 1
        fi
    fi
    command -v apt-get >/dev/null 2>&1 || {
        printf 'ERROR: %s is missing and this is not a Debian/Ubuntu machine; install the Prometheus tools (%s)\n' "$command" "$*" >&2
        return 1
    }
    printf '[setup] installing %s (for %s)\n' "$*" "$command"
    # The package lists once per machine boot is enough; a fresh machine has none.
    if [[ ! -d /var/lib/apt/lists || -z $(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial) ]]; then
        "${sudo[@]}" apt-get update -qq || return 1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null \
        || { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null; } \
        || { printf 'ERROR: apt-get install -y %s failed\n' "$*" >&2; return 1; }
    command -v "$command" >/dev/null 2>&1
}
