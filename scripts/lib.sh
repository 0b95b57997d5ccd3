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
