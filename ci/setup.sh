#!/usr/bin/env bash
# ci/setup.sh - install the Debian 12 packages Keel builds and tests with.
#
# Idempotent: asks dpkg which packages are missing and installs only those;
# runs `apt-get update` only when something must be installed and the
# package lists are missing or older than a day.  Runs as root (or with
# sudo when available).  Prints what it does.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libuv1-dev libsqlite3-dev sqlite3 libcmocka-dev libcyaml-dev libyaml-dev
  libjansson-dev libcrypt-dev uthash-dev libfiu-dev fiu-utils libdw-dev
  python3-stomp valgrind clang libxml2-dev libxml2-utils
  chromium
  rabbitmq-server
  iproute2
  faketime libfaketime
  libzookeeper-mt-dev zookeeperd
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and not root; install them as root" >&2
    exit 2
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are absent or stale.
lists=(/var/lib/apt/lists/*_Packages)
if [ ! -e "${lists[0]}" ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -1440 -print -quit)" ]; then
  echo "setup: apt-get update"
  "${SUDO[@]}" apt-get update -q
fi
echo "setup: apt-get install ${missing[*]}"
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  # Lists that looked fresh can still point at removed versions.
  echo "setup: install failed; apt-get update and retry"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
