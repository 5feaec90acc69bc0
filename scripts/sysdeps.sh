#!/usr/bin/env bash
# Installs the Debian packages the lab and the browser tests use. Idempotent; quiet when all are present.
set -euo pipefail
pkgs=(iproute2 dnsmasq nginx-light nftables iptables chromium chromium-driver fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "sysdeps: missing ${missing[*]} and not root: lab and browser tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The distribution's services must not hold ports or run on the host: the lab starts its own instances.
for s in nginx dnsmasq; do
  systemctl disable --now "$s" >/dev/null 2>&1 || service "$s" stop >/dev/null 2>&1 || true
done
