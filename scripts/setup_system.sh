#!/usr/bin/env bash
# System tools the testbed calls: ffmpeg with AMR-WB (libavcodec-extra), espeak-ng and sox (speech data),
# Prometheus with promtool (`unitocom up --with-prometheus`, the rule tests) and headless Chromium with a font
# (the gateway's page tests and screenshots).
# Installs only what is missing; needs root (or sudo) and Debian's package registry.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox libsox-fmt-all)
# Read ffmpeg's whole list before matching: `grep -q` would close the pipe early, and under pipefail the
# SIGPIPE'd ffmpeg would make a working install look broken (and reinstall on every run).
if ! command -v ffmpeg >/dev/null || ! ffmpeg -hide_banner -encoders 2>/dev/null | grep amrwb >/dev/null; then
  need+=(ffmpeg libavcodec-extra)
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
fc-list : family 2>/dev/null | grep -i dejavu >/dev/null || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing system packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
