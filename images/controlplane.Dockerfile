# ztm-controlplane and ztmctl: both self-contained publish outputs in one directory (one copy of the runtime), run
# through symlinks in /usr/local/bin (the .NET host finds its files from the link's target). Build context: a directory
# holding controlplane/, bin/ (the two links) and data/ (empty); scripts/build-images.sh makes it.
#   BASE_IMAGE  glibc, libstdc++, libssl3 and CA certificates (globalization is invariant: no ICU).
ARG BASE_IMAGE=mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled
FROM ${BASE_IMAGE}
COPY controlplane/ /usr/local/lib/ztm-controlplane/
COPY bin/ /usr/local/bin/
COPY --chown=65532:65532 data/ /var/lib/ztm/
# The data directory is the one writable place (a volume in Kubernetes); ztmctl in the same container finds the
# operator config the control plane writes there.
ENV ZTM_DATA_DIR=/var/lib/ztm ZTM_CONFIG=/var/lib/ztm/ztmctl-config HOME=/var/lib/ztm
USER 65532:65532
EXPOSE 15012 15014 15017
ENTRYPOINT ["/usr/local/bin/ztm-controlplane"]
CMD ["--listen", "0.0.0.0", "--data-dir", "/var/lib/ztm"]
