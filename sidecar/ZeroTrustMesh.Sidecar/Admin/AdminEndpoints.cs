using System.Text.Json.Serialization;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Admin;

/// <summary>
/// The admin surface, on loopback only: readiness (ready only with a valid certificate) and a dump of
/// what the sidecar holds. Never shows key material.
/// </summary>
internal static class AdminEndpoints
{
    public static void MapAdmin(this WebApplication app)
    {
        app.MapGet("/healthz/ready", (Health.Readiness readiness) => readiness.Answer());

        app.MapGet("/metrics", (HttpContext context, Telemetry.SidecarMetrics metrics) => metrics.WriteAsync(context));

        app.MapGet("/config_dump", (IdentityState state, Inbound.InboundSnapshotState inbound, Health.Readiness readiness, SidecarOptions options, TimeProvider time) =>
        {
            var identity = state.Current;
            var current = inbound.Current;
            var authorization = current.Stages.Select(s => s.Stage).OfType<Authorization.AuthorizationStage>().Single().Snapshot;
            var mtls = current.Stages.Select(s => s.Stage).OfType<PeerAuthentication.PeerAuthenticationStage>().Single().Policy;
            return Results.Json(new ConfigDump(
                Ready: readiness.IsReady,
                Policy: new PolicyDump(current.Version, authorization.PolicyCount, authorization.RuleCount, authorization.HasAllowPolicy,
                    mtls.ToString(), mtls.Source, current.ResourceCount,
                    [.. current.Stages.Select(s => new StageDump(s.Kind.Kind.Name, s.Kind.Order, s.Stage.Summary))],
                    current.PortModes.Enabled, PortDump.Of(options, current.PortModes)),
                Revocations: new RevocationsDump(state.Revocations.Count, [.. state.Revocations.Entries.Select(e => e.Subject)]),
                Identity: identity is null ? null : new IdentityDump(
                    identity.Id.Value,
                    identity.Serial,
                    identity.NotBefore,
                    identity.NotAfter,
                    Math.Max(0, (identity.NotAfter - time.GetUtcNow()).TotalSeconds),
                    state.Bundle?.TrustDomain ?? "",
                    state.Bundle?.Sequence ?? 0,
                    [.. state.Bundle?.Roots.Select(r => r.Thumbprint) ?? []]),
                Memory: MemoryDump.Now()), AdminJson.Default.ConfigDump);
        });
    }
}

internal sealed record ConfigDump(bool Ready, PolicyDump Policy, RevocationsDump Revocations, IdentityDump? Identity, MemoryDump Memory);

/// <summary>The revocations in force: what each covers (<c>serial …</c> or <c>spiffe://… issued before …</c>).</summary>
internal sealed record RevocationsDump(int Count, IReadOnlyList<string> Entries);

/// <summary>Where the sidecar's memory is: the managed heap as the GC sees it, next to the process's resident set.</summary>
/// <param name="GcGenerationBytes">After the last collection: gen0, gen1, gen2, large-object heap, pinned-object heap.</param>
internal sealed record MemoryDump(long GcHeapBytes, long GcCommittedBytes, long GcFragmentedBytes, long GcTotalAvailableBytes, long[] GcGenerationBytes,
    int Gen0Collections, int Gen2Collections, long WorkingSetBytes)
{
    public static MemoryDump Now()
    {
        var info = GC.GetGCMemoryInfo();
        var generations = new long[info.GenerationInfo.Length];
        for (var i = 0; i < generations.Length; i++)
        {
            generations[i] = info.GenerationInfo[i].SizeAfterBytes;
        }
        return new MemoryDump(info.HeapSizeBytes, info.TotalCommittedBytes, info.FragmentedBytes, info.TotalAvailableMemoryBytes, generations,
            GC.CollectionCount(0), GC.CollectionCount(2), Environment.WorkingSet);
    }
}

/// <param name="Version">The config version enforced.</param>
/// <param name="Policies">AuthorizationPolicies that select this workload; <paramref name="Rules"/> their rules.</param>
/// <param name="InboundMtls">STRICT or PERMISSIVE, with port-level modes (<c>PERMISSIVE, port 8443 STRICT</c>).</param>
/// <param name="PeerAuthentication"><c>namespace/name</c> of the PeerAuthentication that applies; null for none (STRICT).</param>
/// <param name="Resources">Resources of every kind that apply to this workload.</param>
/// <param name="Stages">The inbound stages in the order they run.</param>
/// <param name="L4Mode">Whether the control plane runs with <c>--l4-mode on</c> (pushed with the config).</param>
/// <param name="Ports">Each app port and how this config version treats it.</param>
internal sealed record PolicyDump(string Version, int Policies, int Rules, bool HasAllowPolicy, string InboundMtls, string? PeerAuthentication,
    int Resources, IReadOnlyList<StageDump> Stages, bool L4Mode, IReadOnlyList<PortDump> Ports);

/// <summary>
/// One app port: <c>l4</c> (relayed as bytes, authorized per connection), <c>l7</c> (HTTP, every request through the
/// inbound stages) or <c>tcp</c> (a declared TCP port: always bytes), and why.
/// </summary>
internal sealed record PortDump(int Port, string Mode, string Reason)
{
    public static PortDump[] Of(SidecarOptions options, ZeroTrustMesh.Policy.L4.PortModes modes) =>
    [
        .. options.AppPorts.Distinct().Order().Select(port => modes.L7Reason(port) is { } l7
            ? new PortDump(port, "l7", l7)
            : new PortDump(port, "l4", "every policy that applies to the port needs only L4 attributes")),
        .. options.TcpPorts.Distinct().Order().Select(port => new PortDump(port, "tcp", "declared TCP port (--tcp-port)")),
    ];
}

/// <summary>One inbound stage: the policy kind it enforces, where it runs, and what it holds.</summary>
internal sealed record StageDump(string Kind, int Order, string Summary);

internal sealed record IdentityDump(
    string SpiffeId,
    string Serial,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter,
    double ExpiresInSeconds,
    string TrustDomain,
    ulong TrustBundleSequence,
    IReadOnlyList<string> TrustBundleRoots);

[JsonSerializable(typeof(ConfigDump))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class AdminJson : JsonSerializerContext;
