#!/usr/bin/env bash
# Installs what building, testing and the quickstart need on a fresh Debian machine.
# The .NET SDK is expected on the machine; NuGet packages restore on build. curl for the quickstart;
# iproute2 and iptables for the transparent-capture tests (network namespaces, run as root); docker.io (the engine),
# clang-14 and zlib1g-dev (NativeAOT) for the container images and the pod tests (scripts/build-images.sh).
set -euo pipefail

if ! command -v dotnet >/dev/null 2>&1; then
  echo "install-deps: the .NET SDK 10 is required (dotnet not found on PATH)" >&2
  exit 1
fi
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "$(id -u)" = 0 ]; then
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v clang-14 >/dev/null 2>&1 || missing+=(clang-14)
  dpkg-query -W -f='${Status}' zlib1g-dev 2>/dev/null | grep -q 'ok installed' || missing+=(zlib1g-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install-deps: please install: ${missing[*]}" >&2
    exit 1
  fi
fi
