# ztm-demo-app (tests only): the echo workload the pod tests put behind sidecars, self-contained, on the same base.
ARG BASE_IMAGE=mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled
FROM ${BASE_IMAGE}
COPY demo-app/ /usr/local/lib/ztm-demo-app/
COPY bin/ /usr/local/bin/
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/ztm-demo-app"]
