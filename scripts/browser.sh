#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/ops/test_overview_page.py).
#
#   scripts/browser.sh ensure   install Debian's chromium and chromium-driver where
#                               missing (apt-get, as root or through `sudo -n`),
#                               then check that the two versions match
#
# Selenium is given both paths by the tests, so it never downloads a browser.
set -euo pipefail

log() { printf '[browser] %s\n' "$*"; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }

PACKAGES=(chromium chromium-driver)

installed() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

install_packages() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
            || die "chromium and chromedriver are missing. Install them:   sudo apt-get install -y ${PACKAGES[*]}"
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "chromium and chromedriver are missing and this is not a Debian-like system: install Chromium and its matching chromedriver"
    log "installing ${PACKAGES[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
}

major() { # the first version number in a --version line
    grep -oE '[0-9]+(\.[0-9]+)+' <<<"$1" | head -n 1 | cut -d. -f1
}

ensure() {
    installed || install_packages
    installed || die "chromium or chromedriver still missing after installing ${PACKAGES[*]}"
    local browser driver
    # Debian's chromium wrapper may print shell noise on stderr; the version is on stdout.
    browser="$(chromium --version 2>/dev/null)"
    driver="$(chromedriver --version 2>/dev/null)"
    [[ $(major "$browser") == "$(major "$driver")" ]] \
        || die "chromedriver does not match the browser ($driver vs $browser): install both from the same source"
    log "$browser; $driver"
}

case "${1:-}" in
    ensure) ensure ;;
    *) die "usage: scripts/browser.sh ensure" ;;
esac
