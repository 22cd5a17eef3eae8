#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# As root it uses apt-get; otherwise it names what is missing and how to get it.
set -euo pipefail
missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "yodel: missing packages: ${missing[*]}" >&2
    echo "yodel: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "yodel: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
