# ztm-iptables: only iptables (nft backend: no lock file, so it runs on a read-only root file system), its libraries and
# its modules, at the paths a glibc distribution has them; the sidecar image copies it over its base. This file builds it
# from Ubuntu 24.04 where a registry is reachable:
#   docker build -f images/iptables.Dockerfile -t ztm-iptables:0.1.0 images
# scripts/build-images.sh instead collects the same files from this machine's Debian packages.
ARG TOOLS_IMAGE=ubuntu:24.04
FROM ${TOOLS_IMAGE} AS collect
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
 && mkdir -p /out/usr/sbin /out/usr/lib/x86_64-linux-gnu \
 && cp -a /usr/sbin/xtables-nft-multi /out/usr/sbin/ \
 && for name in iptables iptables-restore iptables-save; do ln -s xtables-nft-multi /out/usr/sbin/$name; done \
 && cp -a /usr/lib/x86_64-linux-gnu/xtables /out/usr/lib/x86_64-linux-gnu/ \
 && for lib in $(ldd /usr/sbin/xtables-nft-multi | awk '/=>/ {print $3}' | grep -v -e libc.so -e ld-linux); do cp -L "$lib" /out/usr/lib/x86_64-linux-gnu/; done

FROM scratch
COPY --from=collect /out/ /
