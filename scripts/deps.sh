#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# As root it uses apt-get; otherwise it names what is missing and how to get it.
#
# A new cloud machine often runs unattended-upgrades at first boot, holding apt's and dpkg's
# locks for a few minutes: apt-get then waits for them (up to LOCK_TIMEOUT seconds) instead of
# failing at once, and this script says whom it is waiting for.
# YODEL_APT_LOCKS (space-separated files) replaces the locks watched, for the tests.
set -euo pipefail
LOCK_TIMEOUT=300
LOCKS=${YODEL_APT_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}

# A name without :ARCH means the machine's own architecture (or "all"): once libuv1-dev:arm64
# is installed too, dpkg-query answers for both.
native=$(dpkg --print-architecture 2>/dev/null)
missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status} ${Architecture}\n' "$pkg" 2>/dev/null || true)
    arch=${pkg#*:}
    [ "$arch" != "$pkg" ] || arch="($native|all)"
    grep -qxE "install ok installed $arch" <<<"$status" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "yodel: missing packages: ${missing[*]}" >&2
    echo "yodel: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

# Prints "NAME (pid N)" of a process holding one of LOCKS, or nothing (also without lslocks).
lock_holder() {
    local pid path lock
    command -v lslocks >/dev/null || return 0
    while read -r pid path; do
        for lock in $LOCKS; do
            if [ "$path" = "$lock" ]; then
                echo "$(cat "/proc/$pid/comm" 2>/dev/null || echo process) (pid $pid)"
                return 0
            fi
        done
    done < <(lslocks --noheadings --raw --output PID,PATH 2>/dev/null || true)
}

# apt-get waits for the dpkg lock itself (DPkg::Lock::Timeout), but `apt-get update` does not
# wait for the package lists' lock: wait here for every lock, saying so once.
wait_for_locks() {
    local holder waited=0
    holder=$(lock_holder)
    [ -n "$holder" ] || return 0
    echo "yodel: waiting for $holder to release the apt lock (up to ${LOCK_TIMEOUT}s)" >&2
    while [ -n "$holder" ] && [ $waited -lt $LOCK_TIMEOUT ]; do
        sleep 1
        waited=$((waited + 1))
        holder=$(lock_holder)
    done
}

apt_get() {
    wait_for_locks
    apt-get -o DPkg::Lock::Timeout=$LOCK_TIMEOUT "$@"
}

echo "yodel: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A package of another architecture (libssl-dev:arm64, for the cross build) needs that
# architecture added to dpkg before `apt-get update` fetches its lists.
for pkg in "${missing[@]}"; do
    arch=${pkg#*:}
    [ "$arch" != "$pkg" ] || continue
    [ "$arch" = "$native" ] && continue
    dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
done
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}"
