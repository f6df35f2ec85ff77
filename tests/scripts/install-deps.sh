#!/usr/bin/env bash
# Installs the Debian 12 packages sockrewind needs to build, test and demo (idempotent).
set -euo pipefail
pkgs=(g++ cmake make pkg-config libsqlite3-dev sqlite3 nlohmann-json3-dev libcli11-dev catch2
      libmnl-dev iproute2 net-tools nftables clang-format-14 clang-tidy-14 procps
      clang-14 libclang-rt-14-dev
      chromium fonts-dejavu-core # headless Chromium renders the HTML report in the tests
      libncurses-dev tmux) # replay's terminal view, and its tests drive it in tmux
# The real-software lab (tests/lab/test_lab_real.cpp) starts its own servers and clients in
# private network namespaces; the packages' system services are neither needed nor started.
pkgs+=(nginx-light redis-server redis-tools haproxy memcached iperf3 apache2-utils curl)
# The fleet round trip (tests/fleet) starts its own ClickHouse server on loopback.
pkgs+=(clickhouse-server clickhouse-client jq)
services=(nginx redis-server haproxy memcached iperf3 clickhouse-server) # units those packages may ship
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # No service of a newly installed package starts (invoke-rc.d and deb-systemd-invoke honour
  # policy-rc.d's 101); an existing policy is left as it is.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # On a systemd host they would start at the next boot: disable those just installed.
  if [[ -d /run/systemd/system ]]; then
    for s in "${services[@]}"; do
      for p in "${missing[@]}"; do
        if [[ $p == "$s" || $p == "$s-light" ]]; then
          systemctl disable --now "$s" >/dev/null 2>&1 || true
        fi
      done
    done
  fi
fi
