#!/usr/bin/env bash
# Regenerates sidecar/ZeroTrustMesh.Sidecar/method-order.txt: the order in which NativeAOT lays out the sidecar's
# methods (IlcOrderFile). The kernel maps executable pages 64 KB around each page fault, so a request path whose
# methods are spread over the whole 9.7 MB of code keeps most of it resident; laid out together, only that part is.
# Two lists, concatenated and de-duplicated:
#   1. methods sampled by perf in both sidecars of a short `dataplane-load` run (HTTP/1.1, HTTP/2, gRPC, new mTLS
#      connections, fixed rate), hottest first;
#   2. every method on a 4 KB code page that a ready sidecar, built with list 1 laid out first, touches while serving
#      HTTP/1.1 and HTTP/2 calls: its code mapping is split into one VMA per page (alternating madvise flags) so the
#      kernel cannot map neighbours, dropped, and read back from /proc/<pid>/smaps after the calls. Sampling misses
#      methods that run once per connection; this does not.
# A stale list is harmless: names that no longer exist are ignored, new methods go after the listed ones.
# Run as root (perf, gdb attach); installs perf, gdb, curl, wrk, h2load with apt. About 8 minutes. Maintainer tool,
# not run by CI.   Usage: scripts/method-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=sidecar/ZeroTrustMesh.Sidecar/method-order.txt
work=$(mktemp -d /tmp/ztm-method-order.XXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
missing=()
for tool in perf:linux-perf gdb:gdb curl:curl wrk:wrk h2load:nghttp2-client clang-14:clang-14; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; fi

echo "== building (Release, the sidecar with NativeAOT)"
dotnet build ZeroTrustMesh.sln -c Release -v quiet -nologo >/dev/null
dotnet publish sidecar/ZeroTrustMesh.Sidecar -c Release -r linux-x64 -v quiet -nologo -p:CppCompilerAndLinker=clang-14 -o "$work/sidecar" >/dev/null
sidecar=$work/sidecar/ztm-sidecar
bin() { echo "$root/$1/bin/Release/net10.0/$2.dll"; }

echo "== 1/2: sampling both sidecars through a short dataplane-load run"
dotnet "$(bin benchmarks/ZeroTrustMesh.Benchmarks ZeroTrustMesh.Benchmarks)" dataplane-load --sidecar "$sidecar" --repetitions 1 \
  --capacity-duration 6s --h2-duration 4s --newconn-duration 3s --rate-duration 8s --no-haproxy --no-nginx --no-control-plane \
  --results "$work/results" >"$work/load.md" 2>"$work/load.log" &
load=$!; pids+=($load)
# Start-up is not sampled: recording starts with the first load phase.
until grep -q "rep 0 (warm-up) capacity direct" "$work/load.log" 2>/dev/null; do kill -0 $load; sleep 0.1; done
sidecars=$(grep -o "\(frontend\|orders\)-sidecar pid [0-9]*" "$work/load.log" | grep -o "[0-9]*$" | paste -sd,)
perf record -q -F 25000 -p "$sidecars" -o "$work/samples.data" 2>/dev/null &
wait $load
wait
perf report -i "$work/samples.data" --dsos ztm-sidecar --sort sym --stdio -n -F sample,sym 2>/dev/null \
  | grep '\[\.\]' | sort -k1,1nr | sed 's/^ *[0-9]* *\[\.\] //' >"$work/sampled.txt"

echo "== 2/2: code pages a ready sidecar touches while serving (a build with only the sampled methods laid out first)"
# Traced on that layout, a touched page holds few methods that did not run: the list stays tight.
grep -v -e '::' -e '^Rh' -e '^0x' -e '^__' "$work/sampled.txt" >"$work/sampled-order.txt"
dotnet publish sidecar/ZeroTrustMesh.Sidecar -c Release -r linux-x64 -v quiet -nologo -p:CppCompilerAndLinker=clang-14 \
  -p:IlcOrderFile="$work/sampled-order.txt" -o "$work/sampled-sidecar" >/dev/null
sidecar=$work/sampled-sidecar/ztm-sidecar
wait_for() { local deadline=$((SECONDS + 30)); until grep -aq "$2" "$1" 2>/dev/null; do (( SECONDS < deadline )); sleep 0.1; done; }
field() { grep -ao "$2" "$1" | head -n 1; }
export ZTM_CONFIG=$work/operator
dotnet "$(bin control-plane/ZeroTrustMesh.ControlPlane ztm-controlplane)" --data-dir "$work/cp" --port 0 --operator-config "$work/operator" >"$work/cp.log" 2>&1 &
pids+=($!)
wait_for "$work/cp.log" "listening on"
dotnet "$(bin demo/ZeroTrustMesh.DemoApp ztm-demo-app)" --name orders --http-port 0 --grpc-port 0 --tcp-port -1 >"$work/app.log" 2>&1 &
pids+=($!)
wait_for "$work/app.log" "http listening"
dotnet "$(bin control-plane/ZeroTrustMesh.Cli ztmctl)" token create --namespace shop --service-account orders --ttl 10m -o token >"$work/token"
chmod 600 "$work/token"
"$sidecar" --control-plane "$(field "$work/cp.log" 'https://[0-9.:]*')" --trust-bundle "$(grep -ao 'trust bundle .*' "$work/cp.log" | cut -d' ' -f3)" \
  --join-token-file "$work/token" --admin-port 0 --inbound-port 0 --outbound-port 0 \
  --app-port "$(field "$work/app.log" 'http listening on http://127.0.0.1:[0-9]*' | grep -o '[0-9]*$')" >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!; pids+=($sidecar_pid)
wait_for "$work/sidecar.log" "applied:"
outbound=$(field "$work/sidecar.log" 'outbound listening on 127.0.0.1:[0-9]*' | grep -o '[0-9]*$')
python3 - "$sidecar_pid" "$sidecar" >"$work/split.gdb" <<'EOF'
import sys
pid, exe = sys.argv[1], sys.argv[2]
for line in open(f'/proc/{pid}/maps'):
    f = line.split()
    if len(f) > 5 and f[5] == exe and f[1] == 'r-xp':
        start, end = (int(x, 16) for x in f[0].split('-'))
        for page in range(start + 4096, end, 8192):
            print(f'call (int)madvise({page}, 4096, 1)')  # MADV_RANDOM on every other page: one VMA per page
        print(f'call (int)madvise({start}, {end - start}, 4)')  # MADV_DONTNEED: nothing of the code mapped
EOF
gdb -p "$sidecar_pid" -batch -x "$work/split.gdb" >/dev/null 2>&1
for _ in $(seq 30); do
  curl -s -o /dev/null -H "Host: orders.shop" "http://127.0.0.1:$outbound/hello"
  curl -s -o /dev/null --http2-prior-knowledge -H "Host: orders.shop" "http://127.0.0.1:$outbound/h2"
done
sleep 6 # idle work too: timers, the config stream, the trimmer's first look
python3 - "$sidecar_pid" "$sidecar" "$sidecar.dbg" >"$work/paged.txt" <<'EOF'
import bisect, re, subprocess, sys
pid, exe, dbg = sys.argv[1], sys.argv[2], sys.argv[3]
base, pages, mapping = None, set(), None
for line in open(f'/proc/{pid}/smaps'):
    if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
        f = line.split()
        start, end = (int(x, 16) for x in f[0].split('-'))
        if len(f) > 5 and f[5] == exe and base is None:
            base = start
        mapping = (start, end) if len(f) > 5 and f[5] == exe and f[1] == 'r-xp' else None
    elif mapping and line.startswith('Rss:') and int(line.split()[1]) > 0:
        pages.update(range(mapping[0] - base, mapping[1] - base, 4096))
symbols = [(int(f[0], 16), f[2]) for f in (l.split() for l in subprocess.run(['nm', '-n', dbg], capture_output=True, text=True).stdout.splitlines()) if len(f) == 3 and f[1] in 'tT']
addresses = [a for a, _ in symbols]
for page in sorted(pages):
    i = max(0, bisect.bisect_right(addresses, page) - 1)
    while i < len(symbols) and symbols[i][0] < page + 4096:
        print(symbols[i][1]); i += 1
EOF

# Only managed methods can be ordered: runtime (C++ and assembly) symbols and addresses perf could not name are dropped.
cat "$work/sampled.txt" "$work/paged.txt" | grep -v -e '::' -e '^Rh' -e '^0x' -e '^__' | awk '!seen[$0]++' >"$out"
echo "== $out: $(wc -l <"$out") methods ($(wc -l <"$work/sampled.txt") sampled, $(wc -l <"$work/paged.txt") on touched pages); work files in $work"
