#!/usr/bin/env bash
# Installs the Debian 12 packages sockrewind needs to build, test and demo (idempotent).
set -euo pipefail
pkgs=(g++ cmake make pkg-config libsqlite3-dev sqlite3 nlohmann-json3-dev libcli11-dev catch2
      libmnl-dev iproute2 net-tools nftables clang-format-14 clang-tidy-14 procps
      clang-14 libclang-rt-14-dev
      chromium fonts-dejavu-core) # headless Chromium renders the HTML report in the tests
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
