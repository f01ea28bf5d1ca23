using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.L4;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Sidecar.Inbound;

/// <summary>One stage of a snapshot and the kind it was compiled from.</summary>
internal sealed record CompiledStage(IInboundStageKind Kind, IInboundStage Stage);

/// <summary>
/// Everything one config version says about inbound traffic to this workload, compiled together: the ordered stages
/// and whether plaintext connections are accepted. Swapped as one reference, so a request never mixes the JWT rules of
/// one version with the authorization of another.
/// </summary>
internal sealed class InboundSnapshot
{
    private readonly TaskCompletionSource _superseded = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private InboundSnapshot(string version, int resourceCount, IReadOnlyList<CompiledStage> stages, PortModes portModes)
    {
        Version = version;
        PortModes = portModes;
        ResourceCount = resourceCount;
        Stages = stages;
        Pipeline = [.. stages.Select(s => s.Stage)];
        AcceptsPlaintext = stages.Any(s => s.Stage is IPlaintextAdmission { AcceptsPlaintext: true });
    }

    public string Version { get; }

    /// <summary>Resources that apply to this workload at this version.</summary>
    public int ResourceCount { get; }

    /// <summary>In the order they run.</summary>
    public IReadOnlyList<CompiledStage> Stages { get; }

    /// <summary>The stages as the request path runs them (an array: no enumerator per request).</summary>
    public IInboundStage[] Pipeline { get; }

    /// <summary>Whether the inbound listener may accept a connection without TLS (a PERMISSIVE PeerAuthentication).</summary>
    public bool AcceptsPlaintext { get; }

    /// <summary>Which HTTP ports take L4 connections at this version, as the control plane decided.</summary>
    public PortModes PortModes { get; }

    /// <summary>Completes when a newer snapshot replaces this one: open L4 connections check themselves against it then.</summary>
    public Task Superseded => _superseded.Task;

    internal void Supersede() => _superseded.TrySetResult();

    /// <summary>"PeerAuthentication STRICT; AuthorizationPolicy 2 policies, 5 rules; …" for the applied-config log line.</summary>
    public string Summary => string.Join("; ", Stages.Select(s => $"{s.Kind.Kind.Name} {s.Stage.Summary}"))
        + (PortModes.Enabled ? $"; L4 mode: {PortModes}" : "");

    /// <summary>
    /// Compiles, for <paramref name="workload"/>, each kind's resources that apply to it into that kind's stage, in stage
    /// order. Every kind is compiled even when one fails, so the NACK names every problem.
    /// </summary>
    /// <exception cref="ArgumentException">A kind could not compile its resources; the message lists every failure.</exception>
    public static InboundSnapshot Compile(
        string version, WorkloadRef workload, IReadOnlyList<PolicyResource> resources, IEnumerable<IInboundStageKind> kinds, IReadOnlyList<CallerRestriction>? restrictions = null,
        PortModes? portModes = null)
    {
        var context = new StageContext(version, workload) { Restrictions = restrictions ?? [] };
        var applying = resources.Where(r => r.AppliesTo(workload)).ToList();
        var stages = new List<CompiledStage>();
        var errors = new List<string>();
        foreach (var kind in kinds.OrderBy(k => k.Order))
        {
            var own = applying.Where(r => r.Kind == kind.Kind.Name).OrderBy(r => r.Metadata.Name, StringComparer.Ordinal).ToList();
            try
            {
                if (kind.Compile(own, context) is { } stage)
                {
                    stages.Add(new CompiledStage(kind, stage));
                }
            }
            catch (ArgumentException e)
            {
                errors.Add(e.Message);
            }
        }
        return errors.Count > 0 ? throw new ArgumentException(string.Join("; ", errors)) : new InboundSnapshot(version, applying.Count, stages, portModes ?? PortModes.Off);
    }

    /// <summary>The kinds a sidecar with these stage kinds can read from a config stream.</summary>
    public static PolicyKinds KindsOf(IEnumerable<IInboundStageKind> kinds) => new(kinds.Select(k => k.Kind));
}

/// <summary>Holds the current <see cref="InboundSnapshot"/>; read it once per request or connection.</summary>
internal sealed class InboundSnapshotState
{
    private InboundSnapshot _current;

    public InboundSnapshotState(IEnumerable<IInboundStageKind> kinds)
    {
        Kinds = [.. kinds.OrderBy(k => k.Order)];
        PolicyKinds = InboundSnapshot.KindsOf(Kinds);
        // Deny everything until the first snapshot arrives: STRICT, and no ALLOW policy, so no access.
        _current = InboundSnapshot.Compile("", new WorkloadRef("", ""), [], Kinds);
    }

    /// <summary>The kinds this sidecar enforces, in stage order.</summary>
    public IReadOnlyList<IInboundStageKind> Kinds { get; }

    /// <summary>The policy kinds it accepts on its config stream.</summary>
    public PolicyKinds PolicyKinds { get; }

    public InboundSnapshot Current => Volatile.Read(ref _current);

    /// <summary>
    /// Reads each resource of a pushed config with the kind this sidecar enforces it with, and compiles the stages for
    /// <paramref name="workload"/>; nothing changes until <see cref="Update"/>.
    /// </summary>
    /// <exception cref="FormatException">A resource of a kind this sidecar does not enforce, a model it cannot read, or a caller restriction it cannot enforce.</exception>
    /// <exception cref="ArgumentException">A kind could not compile its resources.</exception>
    public InboundSnapshot Compile(Proto.V1.ConfigSnapshot config, WorkloadRef workload) =>
        InboundSnapshot.Compile(config.Version, workload, [.. config.Resources.Select(r => Proto.PolicyMapping.FromProto(r, PolicyKinds))], Kinds,
            [.. config.CallerRestrictions.Select(r => Proto.RestrictionMapping.FromProto(r, workload))], Proto.PortModesMapping.FromProto(config.PortModes));

    public void Update(InboundSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        Interlocked.Exchange(ref _current, snapshot).Supersede();
    }
}

/// <summary>The sidecar's stage kinds (one registration line per policy kind it enforces), and the inbound listener's parts.</summary>
internal static class InboundStageKinds
{
    /// <summary>
    /// The inbound listener's parts as the sidecar composes them (tests compose the same): the stages and what they
    /// keep across config versions (JWKS, token buckets), the current snapshot, the connection middleware, the request
    /// path, and the buffer it records each request's observation in. Shared parts (options, identity, metrics, refusal
    /// and access logs, the forwarder) are registered by the host.
    /// </summary>
    public static IServiceCollection AddInbound(this IServiceCollection services) => services
        .AddInboundStages()
        .AddSingleton<InboundSnapshotState>()
        .AddSingleton(new Authentication.JwksOptions())
        .AddSingleton<Authentication.JwksCache>()
        .AddSingleton(new RateLimiting.RateLimitOptions())
        .AddSingleton<RateLimiting.TokenBuckets>()
        .AddSingleton<InboundTcp>()
        .AddSingleton<InboundConnectionMiddleware>()
        .AddSingleton<Observations.ObservationBuffer>()
        .AddSingleton<InboundProxy>();

    public static IServiceCollection AddInboundStageKind<[System.Diagnostics.CodeAnalysis.DynamicallyAccessedMembers(System.Diagnostics.CodeAnalysis.DynamicallyAccessedMemberTypes.PublicConstructors)] TKind>(this IServiceCollection services)
        where TKind : class, IInboundStageKind =>
        services.AddSingleton<IInboundStageKind, TKind>();

    public static IServiceCollection AddInboundStages(this IServiceCollection services) => services
        .AddInboundStageKind<PeerAuthentication.PeerAuthenticationStageKind>()
        .AddInboundStageKind<Authentication.RequestAuthenticationStageKind>()
        .AddInboundStageKind<Authorization.AuthorizationStageKind>()
        .AddInboundStageKind<RateLimiting.RateLimitStageKind>()
        .AddInboundStageKind<ApiProtection.ApiProtectionStageKind>();
}
