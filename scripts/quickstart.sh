#!/usr/bin/env bash
# Brings up a local mesh on this host: the control plane (CA on first start, in ~/.ztm/controlplane), the policy set in
# examples/policies/quickstart.yaml, and three demo services - frontend, orders, payments - each behind its sidecar.
# Then it makes a few calls as the frontend app, and as the orders app to payments with a demo JWT (minted by
# `ztm-demo-app token` with the demo key in examples/quickstart/), and shows which were allowed or denied, and by which rule.
# Ctrl-C stops everything.   ZTM_SVID_TTL=2m scripts/quickstart.sh   makes certificates short enough to watch renewals.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh

echo "== building (Release)"
dotnet build ZeroTrustMesh.sln -c Release -v quiet -nologo >/dev/null

bin() { echo "$root/$1/bin/Release/net10.0/$2.dll"; }
controlplane=$(bin control-plane/ZeroTrustMesh.ControlPlane ztm-controlplane)
sidecar=$(bin sidecar/ZeroTrustMesh.Sidecar ztm-sidecar)
demo=$(bin demo/ZeroTrustMesh.DemoApp ztm-demo-app)
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
# The first match of regex $2 in file $1.
field() { grep -o "$2" "$1" | head -n 1; }

echo "== control plane (logs: $logs/controlplane.log)"
dotnet "$controlplane" --svid-ttl "${ZTM_SVID_TTL:-1h}" >"$logs/controlplane.log" 2>&1 &
pids+=($!)
wait_for "$logs/controlplane.log" "ztm-controlplane: metrics listening on" 30
grep '^ztm-controlplane:' "$logs/controlplane.log"
address=$(field "$logs/controlplane.log" 'https://[0-9.:]*')
bundle=$(grep -o 'trust bundle .*' "$logs/controlplane.log" | cut -d' ' -f3)

echo "== policy: frontend may GET /orders/*; orders may POST /payments with scope write:payments; nothing else"
ztmctl apply -f examples/policies/quickstart.yaml

# start_service NAME: the demo app and its sidecar, on free ports.
start_service() {
  local name=$1
  dotnet "$demo" --name "$name" --http-port 0 --grpc-port 0 --tcp-port -1 >"$logs/$name-app.log" 2>&1 &
  pids+=($!)
  wait_for "$logs/$name-app.log" "http listening" 30
  local port; port=$(field "$logs/$name-app.log" 'http listening on http://127.0.0.1:[0-9]*' | grep -o '[0-9]*$')
  ztmctl token create --namespace shop --service-account "$name" --ttl 10m -o token >"$logs/$name.token"
  chmod 600 "$logs/$name.token"
  dotnet "$sidecar" --control-plane "$address" --trust-bundle "$bundle" --join-token-file "$logs/$name.token" \
    --admin-port 0 --inbound-port 0 --outbound-port 0 --app-port "$port" --probe-path /healthz >"$logs/$name-sidecar.log" 2>&1 &
  pids+=($!)
  wait_for "$logs/$name-sidecar.log" "registered with the control plane" 30
  wait_for "$logs/$name-sidecar.log" "applied:" 30
}
for service in frontend orders payments; do
  echo "== $service: demo app + sidecar (logs: $logs/$service-*.log)"
  start_service "$service"
done
outbound() { field "$logs/$1-sidecar.log" 'outbound listening on 127.0.0.1:[0-9]*' | grep -o '[0-9]*$'; }
outbound=$(outbound frontend)
admin() { field "$logs/$1-sidecar.log" 'admin listening on http://127.0.0.1:[0-9]*' | cut -d' ' -f4; }

# call FROM METHOD SERVICE PATH [TOKEN]: as app FROM, through its sidecar (Host names the service), with a bearer token if given.
call() {
  local status body auth=()
  [[ -n "${5:-}" ]] && auth=(-H "Authorization: Bearer $5")
  body=$(curl -s -o - -w '\n%{http_code}' -X "$2" -H "Host: $3" "${auth[@]}" "http://127.0.0.1:$(outbound "$1")$4")
  status=$(tail -n 1 <<<"$body")
  # An allowed call shows the caller identity the app received; a denied one the sidecar's reason.
  local shown; shown=$(head -n 1 <<<"$body" | grep -o '"caller":"[^"]*"' || head -n 1 <<<"$body")
  printf '  %-6s %-9s %-14s %-22s -> %s  %s\n' "$2" "$3" "$4" "${6:-}" "$status" "$shown"
}
echo "== calls from frontend (the orders app echoes the caller identity its sidecar verified):"
call frontend GET orders /orders/42
call frontend POST orders /orders/42
call frontend GET payments /payments
echo "== calls from orders to payments, with demo JWTs of the stand-in issuer (ztm-demo-app token --scope ...):"
write_token=$(dotnet "$demo" token --scope "read:payments write:payments" --subject alice --audience payments)
read_token=$(dotnet "$demo" token --scope "read:payments" --subject alice --audience payments)
call orders POST payments /payments "$write_token" "(scope write:payments)"
call orders POST payments /payments "" "(no token)"
call orders POST payments /payments "$read_token" "(scope read:payments)"
call orders POST payments /payments "not.a.jwt" "(malformed token)"
echo "== the same questions to the control plane: ztmctl policy test"
ztmctl policy test --from spiffe://cluster.local/ns/shop/sa/frontend --to orders.shop --method GET --path /orders/42 || true
ztmctl policy test --from spiffe://cluster.local/ns/shop/sa/frontend --to payments.shop --method POST --path /payments || true
ztmctl policy test --from spiffe://cluster.local/ns/shop/sa/orders --to payments.shop --method POST --path /payments --jwt "$write_token" || true
echo "== ztmctl status"
ztmctl status
echo
echo "Mesh is up. Metrics: $(admin orders)/metrics   config: $(admin orders)/config_dump   logs: $logs"
echo "Try:  curl -H 'Host: orders' http://127.0.0.1:$outbound/orders/1   |   Ctrl-C to stop."
wait
