# ztm-sidecar: the NativeAOT sidecar, and its traffic-capture init step (`ztm-sidecar capture`, which runs
# iptables-restore). Build context: a directory holding the publish output `ztm-sidecar` (scripts/build-images.sh makes it).
#   BASE_IMAGE      glibc, libssl3 and CA certificates; the sidecar needs nothing else (no shell, no ICU).
#   IPTABLES_IMAGE  an image holding only iptables (xtables-nft-multi, its libraries and modules; images/iptables.Dockerfile
#                   builds it from Ubuntu 24.04, matching the default base's glibc). Copied over the base as it is.
ARG BASE_IMAGE=mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled
ARG IPTABLES_IMAGE=ztm-iptables:0.1.0
FROM ${IPTABLES_IMAGE} AS iptables

FROM ${BASE_IMAGE}
COPY --from=iptables / /
COPY ztm-sidecar /usr/local/bin/ztm-sidecar
# The sidecar's fixed UID: the capture rules let this UID's connections out uncaptured. The capture step itself runs as
# UID 0 with NET_ADMIN and NET_RAW (the pod spec says so); the root file system can be read-only for both.
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/ztm-sidecar"]
