namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>What <c>dataplane-load</c> was asked to do (the command line, with <c>--quick</c> applied).</summary>
internal sealed record DataPlaneSettings(bool Quick, int Repetitions, TimeSpan Capacity, int Connections, int WrkThreads, TimeSpan RateDuration, int Rate, TimeSpan Warmup,
    TimeSpan H2Duration, int H2Clients, int H2Streams, TimeSpan NewConnectionDuration, int NewConnectionWorkers,
    string ControlPlane, string Sidecar, string DemoApp, string ResultsDir, bool NoHaproxy, bool NoNginx, bool NoControlPlane,
    string PropagationSidecars, int PropagationIdentities, IReadOnlyDictionary<string, string> SidecarEnvironment, string? BareProxy, string? FloorRelay)
{
    /// <summary>Extra flags for the measured sidecars (<c>--sidecar-flag NAME=VALUE</c> → <c>--NAME VALUE</c>), to compare variants.</summary>
    public IReadOnlyList<string> SidecarFlags { get; init; } = [];

    /// <summary><c>--l4</c>: add the sidecar pair in L4 mode (<see cref="L4SidecarPair"/>) as a target.</summary>
    public bool L4 { get; init; }

    /// <summary><c>--api-duration</c>: each paired run of the API protection phase (both routes together; default 20 s,
    /// as many samples per route as a 10-s fixed-rate run of its own). Zero (<c>--quick</c>): twice <see cref="RateDuration"/>.</summary>
    public TimeSpan ApiDuration { get; init; }

    public TimeSpan PairedApiDuration => ApiDuration > TimeSpan.Zero ? ApiDuration : RateDuration * 2;
}

/// <summary>
/// One target of the data-plane run. <see cref="Url"/>/<see cref="Host"/>: HTTP/1.1 keep-alive entry (capacity with wrk,
/// latency at a fixed rate). <see cref="H2Url"/>, <see cref="GrpcUrl"/>: h2c prior-knowledge entries for HTTP/2 and gRPC. <see cref="ServerSide"/>: where a new connection per request goes (the pair's mTLS server
/// side; plain HTTP for direct), whose proxies are <see cref="ServerProxies"/>. <see cref="Startup"/>: starts a fresh
/// instance of the target's proxy and returns its exec → ready time.
/// </summary>
internal sealed record Target(string Name, string Description, Uri Url, string? Host, IReadOnlyList<LoadProcess> Proxies, HttpClient Client)
{
    public Uri? H2Url { get; init; }

    public string? H2Authority { get; init; }

    public Uri? GrpcUrl { get; init; }

    public string? GrpcAuthority { get; init; }

    public Uri? ServerSide { get; init; }

    public IReadOnlyList<LoadProcess> ServerProxies { get; init; } = [];

    /// <summary>The network namespace the client dials from (the L4 target's capture); null: this one.</summary>
    public CaptureNamespace? Namespace { get; init; }

    /// <summary>Starts one more instance of this target's proxy, waits until it is ready, stops it: (which process, ms from exec to ready, what "ready" meant).</summary>
    public Func<CancellationToken, Task<(string Process, double Ms, string Ready)>>? Startup { get; init; }
}
