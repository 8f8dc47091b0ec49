#!/usr/bin/env bash
# Installs everything the platform needs on a fresh Debian machine: system tools for test speech and
# SIP load (espeak-ng, sox, sipp) and a virtualenv with every service's dependencies.
set -euo pipefail
py="$1"; venv="$2"; apt_packages="$3"

missing=()
for pkg in $apt_packages; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# torch first, pinned, so pip takes the CPU build instead of resolving a CUDA one for silero/sentence-transformers.
"$venv/bin/pip" install -q "torch==2.13.0"
"$venv/bin/pip" install -q -e ".[all]"
