#!/usr/bin/env bash
# Builds the container images: ztm-sidecar:0.1.0 (NativeAOT), ztm-controlplane:0.1.0 (+ ztmctl) and, for the pod
# tests, ztm-demo-app:0.1.0 and ztm-test-tools:0.1.0 (sleep and curl). The Dockerfiles (images/) take their base as a
# build argument; here, with no registry to pull from, the bases are made from this machine's Debian files and
# imported with `docker import`:
#   ztm-base:0.1.0      a root file system holding exactly the shared libraries the published binaries load (ldd of
#                       each, plus libssl3/libcrypto3, which .NET dlopens), CA certificates, passwd/group, /tmp
#   ztm-iptables:0.1.0  iptables (nft backend), its libraries and modules (images/iptables.Dockerfile is the same from Ubuntu)
# Where a registry is reachable, ZTM_BASE_IMAGE (e.g. mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled) and
# ZTM_IPTABLES_IMAGE (images/iptables.Dockerfile) replace the local bases.
# An image whose inputs (sources, Dockerfile, this script) are unchanged since it was built is kept: a second run
# with nothing changed publishes nothing and takes seconds. --force rebuilds everything.
# Needs: dotnet, clang-14 (NativeAOT), a Docker engine, iptables (scripts/install-deps.sh installs them as root).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=0.1.0
out=${ZTM_IMAGES_DIR:-$PWD/obj/images}
force=false
[ "${1:-}" = --force ] && force=true
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

log() { echo "build-images: $*" >&2; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers (start dockerd; scripts/install-deps.sh installs docker.io)"; exit 1; }

# The hash of the sources a publish is made from (a stamp in its output directory), and of everything an image is
# made from (those, its Dockerfile and this script: a label on the image).
inputs_hash() {
  find "$@" Directory.Build.props Directory.Packages.props global.json -type f \
    -not -path '*/bin/*' -not -path '*/obj/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}
label_of() { docker image inspect --format '{{ index .Config.Labels "dev.ztm.inputs" }}' "$1" 2>/dev/null || true; }
up_to_date() { [ "$force" = false ] && [ "$(label_of "$1")" = "$2" ]; }

sidecar_src=$(inputs_hash sidecar core proto)
controlplane_src=$(inputs_hash control-plane core proto)
demo_src=$(inputs_hash demo core proto)
image_hash() { echo "$1 $(cat "$2" scripts/build-images.sh | sha256sum)" | sha256sum | cut -c1-16; }
base_image=${ZTM_BASE_IMAGE:-ztm-base:$tag}
iptables_image=${ZTM_IPTABLES_IMAGE:-ztm-iptables:$tag}
sidecar_hash=$(image_hash "$sidecar_src $base_image $iptables_image" images/sidecar.Dockerfile)
controlplane_hash=$(image_hash "$controlplane_src $base_image" images/controlplane.Dockerfile)
demo_hash=$(image_hash "$demo_src $base_image" images/demo-app.Dockerfile)
if up_to_date ztm-sidecar:$tag "$sidecar_hash" && up_to_date ztm-controlplane:$tag "$controlplane_hash" && up_to_date ztm-demo-app:$tag "$demo_hash" \
  && docker image inspect ztm-test-tools:$tag >/dev/null 2>&1; then
  log "ztm-sidecar:$tag, ztm-controlplane:$tag, ztm-demo-app:$tag and ztm-test-tools:$tag are up to date"
  exit 0
fi

# 1. Publish what is out of date (a stamp in each output directory names the inputs it was published from).
publish=$out/publish
mkdir -p "$publish"
# Intermediate and build outputs of these publishes go under $out/artifacts, not the projects' obj/ and bin/: the pod
# tests run this script while `dotnet test` may still be building the same projects (Debug) in the source tree.
artifacts=(--artifacts-path "$out/artifacts")
published() { [ "$force" = false ] && [ "$(cat "$publish/$1.inputs" 2>/dev/null || cat "$publish/$1/.inputs" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$publish/$1/.inputs"; }
if ! up_to_date ztm-sidecar:$tag "$sidecar_hash" && ! published sidecar "$sidecar_src"; then
  log "publishing ztm-sidecar (NativeAOT, takes minutes)"
  rm -rf "$publish/sidecar"
  dotnet publish sidecar/ZeroTrustMesh.Sidecar -c Release -r linux-x64 -p:CppCompilerAndLinker=clang-14 "${artifacts[@]}" -o "$publish/sidecar" -v:q -nologo >&2
  rm -f "$publish/sidecar"/*.pdb "$publish/sidecar"/*.dbg
  stamp sidecar "$sidecar_src"
fi
publish_self_contained() { # project name hash
  if published "$2" "$3"; then return; fi
  log "publishing $1 (self-contained)"
  rm -rf "${publish:?}/$2"
  dotnet publish "$1" -c Release -r linux-x64 --self-contained "${artifacts[@]}" -o "$publish/$2" -v:q -nologo >&2
  rm -f "$publish/$2"/*.pdb
  stamp "$2" "$3"
}
if ! up_to_date ztm-controlplane:$tag "$controlplane_hash"; then
  publish_self_contained control-plane/ZeroTrustMesh.ControlPlane controlplane "$controlplane_src"
  # ztmctl into the same directory: both run on the one copy of the runtime (each has its own deps.json and runtimeconfig.json).
  if ! published controlplane/ztmctl "$controlplane_src"; then
    dotnet publish control-plane/ZeroTrustMesh.Cli -c Release -r linux-x64 --self-contained "${artifacts[@]}" -o "$publish/controlplane" -v:q -nologo >&2
    rm -f "$publish/controlplane"/*.pdb
    echo "$controlplane_src" >"$publish/controlplane/ztmctl.inputs"
  fi
fi
if ! up_to_date ztm-demo-app:$tag "$demo_hash"; then
  publish_self_contained demo/ZeroTrustMesh.DemoApp demo-app "$demo_src"
fi

# 2. The bases, from this machine's files.
lib_dir=/usr/lib/x86_64-linux-gnu
copy_file() { # absolute-path root: the file (symlinks resolved) at the same path, /lib... mapped into /usr/lib...
  local target=$2$(echo "$1" | sed -e 's#^/lib/#/usr/lib/#' -e 's#^/lib64/#/usr/lib64/#')
  mkdir -p "$(dirname "$target")"
  cp -L "$1" "$target"
}
copy_libraries() { # root elf...: every library the files load, their own dependencies included (ldd lists them all)
  local root=$1; shift
  ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\/lib64\// {print $1}' | sort -u | while read -r lib; do
    copy_file "$lib" "$root"
  done
}
merged_usr() { # root: /lib, /lib64, /bin, /sbin as links into /usr, as Debian 12 and Ubuntu 24.04 lay them out
  mkdir -p "$1/usr/lib" "$1/usr/lib64" "$1/usr/bin" "$1/usr/sbin"
  ln -sfn usr/lib "$1/lib"; ln -sfn usr/lib64 "$1/lib64"; ln -sfn usr/bin "$1/bin"; ln -sfn usr/sbin "$1/sbin"
}
import_rootfs() { # root image [docker import option...]: labelled with the hash of what it holds; kept when that is unchanged
  local root=$1 image=$2 hash; shift 2
  hash=$(cd "$root" && find . -print0 | sort -z | tar --null --no-recursion -T - -cf - --owner=0 --group=0 --mtime=@0 | sha256sum | cut -c1-16)
  hash=$(echo "$hash $*" | sha256sum | cut -c1-16)
  if up_to_date "$image" "$hash"; then return; fi
  log "importing $image"
  tar -C "$root" --owner=0 --group=0 -cf - . | docker import --change "LABEL dev.ztm.inputs=$hash" "$@" - "$image" >/dev/null
}

base=$out/rootfs-base
rm -rf "$base" && merged_usr "$base"
# The binaries published by this run or an earlier one (an image kept as it was keeps the base it was built on).
elves=()
for dir in sidecar controlplane demo-app; do
  [ -d "$publish/$dir" ] || continue
  while IFS= read -r -d '' file; do
    if head -c 4 "$file" | grep -qa ELF; then elves+=("$file"); fi
  done < <(find "$publish/$dir" -maxdepth 1 -type f \( -name '*.so' -o -perm -u+x \) -print0)
done
copy_libraries "$base" "${elves[@]}" "$lib_dir/libssl.so.3" "$lib_dir/libcrypto.so.3"
copy_file "$lib_dir/libssl.so.3" "$base" && copy_file "$lib_dir/libcrypto.so.3" "$base"   # dlopened: ldd lists neither
mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/var/lib" "$base/usr/local/bin"
chmod 1777 "$base/tmp"
cp -L /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'ztm-sidecar:x:1337:1337::/nonexistent:/sbin/nologin' \
  'demo:x:1000:1000::/nonexistent:/sbin/nologin' 'nonroot:x:65532:65532::/var/lib/ztm:/sbin/nologin' >"$base/etc/passwd"
printf '%s\n' 'root:x:0:' 'ztm-sidecar:x:1337:' 'demo:x:1000:' 'nonroot:x:65532:' >"$base/etc/group"
echo 'hosts: files dns' >"$base/etc/nsswitch.conf"
[ -n "${ZTM_BASE_IMAGE:-}" ] || import_rootfs "$base" ztm-base:$tag

iptables_root=$out/rootfs-iptables
rm -rf "$iptables_root" && mkdir -p "$iptables_root/usr/sbin" "$iptables_root$lib_dir"
cp -L /usr/sbin/xtables-nft-multi "$iptables_root/usr/sbin/"
for name in iptables iptables-restore iptables-save; do ln -s xtables-nft-multi "$iptables_root/usr/sbin/$name"; done
cp -a "$lib_dir/xtables" "$iptables_root$lib_dir/"
copy_libraries "$iptables_root" /usr/sbin/xtables-nft-multi
# Only what the base lacks: the base's glibc stays the one copy.
(cd "$base" && find . -type f) | while read -r present; do rm -f "$iptables_root/$present"; done
[ -n "${ZTM_IPTABLES_IMAGE:-}" ] || import_rootfs "$iptables_root" ztm-iptables:$tag

# The pod tests' stand-in for a pod's pause container and an app's client: sleep and curl (with their libraries) only.
tools_root=$out/rootfs-test-tools
rm -rf "$tools_root" && merged_usr "$tools_root"
for tool in /usr/bin/curl /usr/bin/sleep; do copy_file "$tool" "$tools_root"; done
copy_libraries "$tools_root" /usr/bin/curl /usr/bin/sleep
mkdir -p "$tools_root/tmp" "$tools_root/etc" && chmod 1777 "$tools_root/tmp"
cp "$base/etc/passwd" "$base/etc/group" "$base/etc/nsswitch.conf" "$tools_root/etc/"
import_rootfs "$tools_root" ztm-test-tools:$tag --change 'USER 1000:1000' --change 'ENTRYPOINT ["/usr/bin/sleep", "infinity"]'

# 3. The images. Each build context holds only what its image copies.
build() { # name hash dockerfile context [build-arg...]
  local name=$1 hash=$2 dockerfile=$3 context=$4; shift 4
  log "building $name:$tag"
  docker build -q -f "$dockerfile" --build-arg BASE_IMAGE="$base_image" "$@" --label "dev.ztm.inputs=$hash" -t "$name:$tag" "$context" >/dev/null
}
context() { # name: an empty context directory
  rm -rf "$out/context/$1" && mkdir -p "$out/context/$1" && echo "$out/context/$1"
}
link() { # context directory name: bin/name -> /usr/local/lib/directory/name
  mkdir -p "$1/bin" && ln -s "../lib/$2/$3" "$1/bin/$3"
}

if ! up_to_date ztm-sidecar:$tag "$sidecar_hash"; then
  ctx=$(context sidecar)
  cp "$publish/sidecar/ztm-sidecar" "$ctx/"
  build ztm-sidecar "$sidecar_hash" images/sidecar.Dockerfile "$ctx" --build-arg IPTABLES_IMAGE="$iptables_image"
fi
if ! up_to_date ztm-controlplane:$tag "$controlplane_hash"; then
  ctx=$(context controlplane)
  cp -a "$publish/controlplane" "$ctx/controlplane" && rm -f "$ctx"/controlplane/*.inputs "$ctx"/controlplane/.inputs && mkdir "$ctx/data"
  # The links point into /usr/local/lib/ztm-controlplane/, where the Dockerfile copies the directory.
  link "$ctx" ztm-controlplane ztm-controlplane && link "$ctx" ztm-controlplane ztmctl
  build ztm-controlplane "$controlplane_hash" images/controlplane.Dockerfile "$ctx"
fi
if ! up_to_date ztm-demo-app:$tag "$demo_hash"; then
  ctx=$(context demo-app)
  cp -a "$publish/demo-app" "$ctx/demo-app" && rm -f "$ctx/demo-app/.inputs"
  link "$ctx" ztm-demo-app ztm-demo-app
  build ztm-demo-app "$demo_hash" images/demo-app.Dockerfile "$ctx"
fi

docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^ztm-(sidecar|controlplane|demo-app|test-tools|base|iptables):' >&2
