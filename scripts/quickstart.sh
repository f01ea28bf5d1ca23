#!/usr/bin/env bash
# Brings up a local mesh on this host: the control plane (CA on first start, in ~/.ztm/controlplane),
# a join token from ztmctl, and one sidecar that obtains its identity. Ctrl-C stops both.
#   ZTM_SVID_TTL=2m scripts/quickstart.sh   # watch the sidecar renew every minute
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh

echo "== building (Release)"
dotnet build ZeroTrustMesh.sln -c Release -v quiet -nologo >/dev/null

bin() { echo "$root/$1/bin/Release/net10.0/$2.dll"; }
controlplane=$(bin control-plane/ZeroTrustMesh.ControlPlane ztm-controlplane)
sidecar=$(bin sidecar/ZeroTrustMesh.Sidecar ztm-sidecar)
ztmctl() { dotnet "$(bin control-plane/ZeroTrustMesh.Cli ztmctl)" "$@"; }

logs=$(mktemp -d /tmp/ztm-quickstart.XXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Waits (at most $3 seconds) for a line matching $2 in file $1.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if (( SECONDS > deadline )); then echo "quickstart: gave up waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1; fi
    sleep 0.2
  done
}

echo "== starting the control plane (logs: $logs/controlplane.log)"
dotnet "$controlplane" --svid-ttl "${ZTM_SVID_TTL:-1h}" >"$logs/controlplane.log" 2>&1 &
pids+=($!)
wait_for "$logs/controlplane.log" "listening on" 30
grep '^ztm-controlplane:' "$logs/controlplane.log"
address=$(grep -o 'listening on https://[^ ]*' "$logs/controlplane.log" | cut -d' ' -f3)
bundle=$(grep -o 'trust bundle .*' "$logs/controlplane.log" | cut -d' ' -f3)

echo "== minting a join token for spiffe://cluster.local/ns/shop/sa/orders (ztmctl finds ~/.ztm/config by itself)"
minted=$(ztmctl token create --namespace shop --service-account orders --ttl 10m -o json)
echo "$minted"
token=$(sed 's/.*"token":"\([^"]*\)".*/\1/' <<<"$minted")
printf '%s' "$token" >"$logs/orders.token"
chmod 600 "$logs/orders.token"

echo "== starting the sidecar for shop/orders (logs: $logs/sidecar.log)"
dotnet "$sidecar" --control-plane "$address" --trust-bundle "$bundle" --join-token-file "$logs/orders.token" >"$logs/sidecar.log" 2>&1 &
pids+=($!)
wait_for "$logs/sidecar.log" "svid issued" 30
admin=$(grep -o 'admin listening on http://[^ ]*' "$logs/sidecar.log" | cut -d' ' -f4)

echo "== the sidecar holds its identity:"
curl -s "$admin/healthz/ready"
curl -s "$admin/config_dump"
echo
echo "Mesh is up. Try:  curl $admin/config_dump   |   tail -f $logs/*.log   |   Ctrl-C to stop."
wait
