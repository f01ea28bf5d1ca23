using System.CommandLine;
using System.Security.Cryptography;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar;

/// <summary>Everything the sidecar is configured with; parsed and validated once at start.</summary>
internal sealed class SidecarOptions
{
    public const string JoinTokenVariable = "ZTM_JOIN_TOKEN";
    public const string AccessLogVariable = "ZTM_ACCESS_LOG";

    public required Uri ControlPlane { get; init; }
    public required TrustBundle BootstrapBundle { get; init; }
    /// <summary>What the first certificate is asked for with: a join token, or a projected service-account token.</summary>
    public required Identity.IdentityProof Proof { get; init; }

    public required int AdminPort { get; init; }

    /// <summary>The plain-HTTP port on every address for kubelet and Prometheus (<c>--health-port</c>); null: none.</summary>
    public int? HealthPort { get; init; }

    /// <summary>The app's kubelet probes the injector rewrote to the health port (<c>ZTM_APP_PROBES</c>).</summary>
    public Health.AppProbes AppProbes { get; init; } = Health.AppProbes.None;

    /// <summary>Where the inbound mTLS listener listens; also the address registered for callers.</summary>
    public required System.Net.IPEndPoint InboundEndpoint { get; set; }

    public required int OutboundPort { get; init; }

    /// <summary>The application's address on this host; inbound traffic goes there.</summary>
    public System.Net.IPAddress AppAddress { get; init; } = System.Net.IPAddress.Loopback;

    /// <summary>Application ports speaking HTTP/1.1, HTTP/2 or gRPC; the first is the default.</summary>
    public required IReadOnlyList<int> AppPorts { get; init; }

    /// <summary>Application ports carrying opaque TCP (a database protocol): relayed, never sniffed.</summary>
    public required IReadOnlyList<int> TcpPorts { get; init; }

    /// <summary>The address clients dial for this service when traffic is captured transparently (like a ClusterIP).</summary>
    public System.Net.IPAddress? ServiceAddress { get; init; }

    /// <summary>Whether a refused caller is told why (the deciding policy and rule); the access log always says.</summary>
    public bool ExplainDenials { get; init; } = true;

    /// <summary>Whether every request is written to stdout as one JSON line (<c>--access-log json</c>) or not (<c>off</c>).</summary>
    public bool AccessLog { get; init; } = true;

    /// <summary>What an escaped slash or backslash in a request path gets (<c>--escaped-slashes</c>): refused by default.</summary>
    public Inbound.EscapedSlashes EscapedSlashes { get; init; } = Inbound.EscapedSlashes.Reject;

    /// <summary>
    /// Whether HTTP/1.1 requests reach the app through the sidecar's own HTTP/1.1 framing on pooled loopback connections
    /// (<c>--http1-fast-path</c>, <see cref="Http1.Http1AppHop"/>) instead of YARP's HttpClient; what it does not carry
    /// goes through YARP either way.
    /// </summary>
    public bool Http1FastPath { get; init; }

    /// <summary>The app's health-probe paths: allowed without a policy, as kubelet probes must be.</summary>
    public IReadOnlyList<string> ProbePaths { get; init; } = [];

    public TimeSpan ConnectTimeout => Resilience.ConnectTimeout;

    /// <summary>Outbound resilience for destinations without their own settings.</summary>
    public Outbound.ResilienceSettings Resilience { get; init; } = Outbound.ResilienceSettings.Default;

    /// <summary>Per destination service ("orders.shop" or "orders"): <c>--destination</c>.</summary>
    public IReadOnlyDictionary<string, Outbound.ResilienceSettings> DestinationResilience { get; init; } = new Dictionary<string, Outbound.ResilienceSettings>();

    /// <summary>The settings for <paramref name="service"/> ("orders.shop"): its own, by full or short name, else the defaults.</summary>
    public Outbound.ResilienceSettings ResilienceFor(string service) =>
        DestinationResilience.TryGetValue(service, out var own) ? own
        : service.IndexOf('.', StringComparison.Ordinal) is > 0 and var dot && DestinationResilience.TryGetValue(service[..dot], out var byShortName) ? byShortName
        : Resilience;

    public TimeSpan TcpIdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Whether each inbound request is reported to the control plane (<c>--observations</c>; API discovery and the rest of issue 19).</summary>
    public bool Observations { get; init; } = true;

    /// <summary>Observations held while they wait to be sent (<c>--observation-buffer</c>); beyond it they are dropped and counted.</summary>
    public int ObservationBuffer { get; init; } = DefaultObservationBuffer;

    public const int DefaultObservationBuffer = 8192;
    /// <summary>The tamper-evident decision log (<c>--decision-log DIR</c>); null: off.</summary>
    public Sidecar.DecisionLog.DecisionLogSettings? DecisionLog { get; init; }

    public static RootCommand Command(Func<SidecarOptions, CancellationToken, Task<int>> run)
    {
        var controlPlane = new Option<string>("--control-plane") { Description = "Control plane address", DefaultValueFactory = _ => "https://127.0.0.1:15012" };
        var trustBundle = new Option<string>("--trust-bundle") { Description = "PEM trust bundle to verify the control plane with (ztm-controlplane prints where it is)", Required = true };
        var trustDomain = new Option<string>("--trust-domain") { Description = "SPIFFE trust domain", DefaultValueFactory = _ => SpiffeId.DefaultTrustDomain };
        var joinToken = new Option<string?>("--join-token") { Description = $"Join token for the first certificate (or ${JoinTokenVariable}; prefer --join-token-file)" };
        var joinTokenFile = new Option<string?>("--join-token-file") { Description = "File holding the join token" };
        var serviceAccountTokenFile = new Option<string?>("--service-account-token-file")
        {
            Description = "Kubernetes: a projected service-account token file, the proof for the first certificate instead of a join token (read at every signing)",
        };
        var healthPort = new Option<int?>("--health-port")
        {
            Description = $"Plain-HTTP port on every address for kubelet and Prometheus: /healthz/ready, /metrics, and the app's probes from ${Health.AppProbes.Variable} (15021 when injected; default none)",
        };
        var adminPort = new Option<int>("--admin-port") { Description = "Admin port on 127.0.0.1 (/healthz/ready, /config_dump, /metrics); 0 picks a free one", DefaultValueFactory = _ => 15020 };
        var inboundAddress = new Option<string>("--inbound-address") { Description = "Address of the inbound mTLS listener, registered for callers", DefaultValueFactory = _ => "127.0.0.1" };
        var inboundPort = new Option<int>("--inbound-port") { Description = "Inbound mTLS port; 0 picks a free one", DefaultValueFactory = _ => 15006 };
        var outboundPort = new Option<int>("--outbound-port") { Description = "Outbound port on 127.0.0.1 for the local app (HTTP proxy, Host-addressed, or transparent capture); 0 picks a free one", DefaultValueFactory = _ => 15001 };
        var appPorts = new Option<int[]>("--app-port") { Description = "Application port speaking HTTP/1.1, HTTP/2 or gRPC on 127.0.0.1 (repeatable; the first is the default)", AllowMultipleArgumentsPerToken = false };
        var tcpPorts = new Option<int[]>("--tcp-port") { Description = "Application port carrying opaque TCP (repeatable)" };
        var explainDenials = new Option<bool>("--explain-denials") { Description = "Tell a refused caller why in the response body (true/false); the access log always says", DefaultValueFactory = _ => true };
        // An environment default as well as a flag, as Linkerd's proxy takes its access log setting: a pod template or
        // an injector can set it without rewriting the sidecar's arguments.
        var accessLog = new Option<string>("--access-log")
        {
            Description = $"One JSON line per request on stdout (json), or none (off); default ${AccessLogVariable}, else json",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable(AccessLogVariable) is { Length: > 0 } value ? value : "json",
        };
        var http1FastPath = new Option<bool>("--http1-fast-path")
        {
            Description = "Forward HTTP/1.1 requests to the app over the sidecar's own HTTP/1.1 framing on pooled connections instead of HttpClient (true/false); upgrades, Expect and HTTP/2 go through YARP",
        };
        var probePaths = new Option<string[]>("--probe-path") { Description = "The app's health-probe path, allowed without a policy (repeatable)" };
        var escapedSlashes = new Option<string>("--escaped-slashes")
        {
            Description = "A request path with %2F, %5C or a backslash, which apps may read as a separator: reject (400), unescape (decode, normalize, forward that), or keep",
            DefaultValueFactory = _ => "reject",
        };
        var serviceAddress = new Option<string?>("--service-address") { Description = "Address clients dial for this service under transparent capture" };
        var connectTimeout = CommandLineOptions.Duration("--connect-timeout", "Outbound connect timeout", "2s");
        var destinations = new Option<string[]>("--destination") { Description = $"Resilience for one destination service: SERVICE:key=value,… ({Outbound.ResilienceSettings.Keys}); repeatable" };
        var tcpIdle = CommandLineOptions.Duration("--tcp-idle-timeout", "Close an opaque TCP relay idle this long", "10m");
        var observations = new Option<bool>("--observations")
        {
            Description = "Report each inbound request (caller, method, path, status, decision) to the control plane for API discovery (true/false)",
            DefaultValueFactory = _ => true,
        };
        var observationBuffer = new Option<int>("--observation-buffer")
        {
            Description = "Observations held while they wait to be sent; beyond it they are dropped and counted (ztm_observations_dropped_total)",
            DefaultValueFactory = _ => DefaultObservationBuffer,
        };
        // Off unless asked for: it writes to disk on every request, and a log is only worth keeping on a volume that
        // outlives the pod, which is the operator's choice of directory.
        var decisionLog = new Option<string?>("--decision-log") { Description = "Directory for the tamper-evident decision log (every inbound decision, hash-chained; checkpoints signed to the control plane); default off" };
        var decisionLogSegment = new Option<long>("--decision-log-segment-bytes") { Description = "Start a new decision-log segment at this size", DefaultValueFactory = _ => Sidecar.DecisionLog.DecisionLogSettings.DefaultSegmentBytes };
        var checkpointRecords = new Option<long>("--decision-log-checkpoint-records") { Description = "Sign a checkpoint after this many records", DefaultValueFactory = _ => Sidecar.DecisionLog.DecisionLogSettings.DefaultCheckpointRecords };
        var checkpointInterval = CommandLineOptions.Duration("--decision-log-checkpoint-interval", "Sign a checkpoint this often when there are new records", "10s");
        var decisionLogOtlp = new Option<string?>("--decision-log-otlp") { Description = "Also export every decision-log record as an OpenTelemetry log to this OTLP/HTTP collector (http://collector:4318); needs --decision-log" };

        var command = new RootCommand("ZeroTrustMesh sidecar: the per-workload proxy")
        {
            controlPlane, trustBundle, trustDomain, joinToken, joinTokenFile, serviceAccountTokenFile, adminPort, healthPort,
            inboundAddress, inboundPort, outboundPort, appPorts, tcpPorts, serviceAddress, probePaths, escapedSlashes, explainDenials, accessLog, connectTimeout, destinations, tcpIdle,
            http1FastPath,
            observations, observationBuffer,
            decisionLog, decisionLogSegment, checkpointRecords, checkpointInterval, decisionLogOtlp,
        };
        command.SetAction((result, cancellation) =>
        {
            if (!Uri.TryCreate(result.GetValue(controlPlane), UriKind.Absolute, out var address) || address.Scheme != Uri.UriSchemeHttps)
            {
                return Fail($"--control-plane '{result.GetValue(controlPlane)}' must be an https:// address");
            }
            var td = result.GetValue(trustDomain)!;
            if (!SpiffeId.TryParse(SpiffeId.Scheme + td, out _, out var tdError))
            {
                return Fail($"--trust-domain '{td}' is invalid: {tdError}");
            }
            // Before the join token is read: a sidecar that would stop on its probe paths must not spend it first.
            foreach (var path in result.GetValue(probePaths) ?? [])
            {
                if (ProbePathError(path) is { } probeError)
                {
                    return Fail($"--probe-path '{path}' is not an exact path: {probeError}");
                }
            }
            var appProbes = Health.AppProbes.None;
            if (Environment.GetEnvironmentVariable(Health.AppProbes.Variable) is { Length: > 0 } probesJson
                && !Health.AppProbes.TryParse(probesJson, out appProbes, out var probeErrors))
            {
                return Fail($"${Health.AppProbes.Variable} is invalid: {string.Join("; ", probeErrors)}");
            }
            TrustBundle bundle;
            var bundlePath = result.GetValue(trustBundle)!;
            try
            {
                bundle = TrustBundle.FromPem(td, File.ReadAllText(bundlePath));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
            {
                return Fail($"cannot read the trust bundle {bundlePath}: {e.Message}");
            }
            Identity.IdentityProof proof;
            if (result.GetValue(serviceAccountTokenFile) is { } saTokenFile)
            {
                if (result.GetValue(joinTokenFile) is not null || result.GetValue(joinToken) is not null)
                {
                    return Fail("--service-account-token-file and a join token are alternatives: give one");
                }
                // Not read here: kubelet may write it a moment after the container starts, and it is read at every signing.
                proof = new Identity.IdentityProof.ServiceAccountTokenFile(saTokenFile);
            }
            else
            {
                string? token;
                try
                {
                    token = result.GetValue(joinTokenFile) is { } file ? File.ReadAllText(file).Trim() : result.GetValue(joinToken) ?? Environment.GetEnvironmentVariable(JoinTokenVariable);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return Fail($"cannot read the join token file: {e.Message}");
                }
                if (string.IsNullOrWhiteSpace(token))
                {
                    return Fail($"a join token is needed: --join-token-file, --join-token or ${JoinTokenVariable} (mint one with 'ztmctl token create'), or --service-account-token-file in Kubernetes");
                }
                proof = new Identity.IdentityProof.JoinToken(token.Trim());
            }
            int[] ports = [result.GetValue(adminPort), result.GetValue(healthPort) ?? 0, result.GetValue(inboundPort), result.GetValue(outboundPort), .. result.GetValue(appPorts) ?? [], .. result.GetValue(tcpPorts) ?? []];
            if (ports.Any(p => p is < 0 or > 65535))
            {
                return Fail("ports must be between 0 and 65535");
            }
            if (!System.Net.IPAddress.TryParse(result.GetValue(inboundAddress), out var inboundIp))
            {
                return Fail($"--inbound-address '{result.GetValue(inboundAddress)}' is not an IP address");
            }
            System.Net.IPAddress? serviceIp = null;
            if (result.GetValue(serviceAddress) is { } sa && !System.Net.IPAddress.TryParse(sa, out serviceIp))
            {
                return Fail($"--service-address '{sa}' is not an IP address");
            }
            var accessLogMode = result.GetValue(accessLog);
            if (accessLogMode is not ("json" or "off"))
            {
                return Fail($"--access-log '{accessLogMode}' must be json or off");
            }
            if (!Enum.TryParse<Inbound.EscapedSlashes>(result.GetValue(escapedSlashes), ignoreCase: true, out var escaped) || !Enum.IsDefined(escaped))
            {
                return Fail($"--escaped-slashes '{result.GetValue(escapedSlashes)}' must be reject, unescape or keep");
            }
            if (result.GetValue(observationBuffer) is < 1 or > 1_048_576)
            {
                return Fail($"--observation-buffer {result.GetValue(observationBuffer)} must be between 1 and 1048576");
            }
            var defaults = Outbound.ResilienceSettings.Default with { ConnectTimeout = result.GetValue(connectTimeout) };
            var perDestination = new Dictionary<string, Outbound.ResilienceSettings>(StringComparer.Ordinal);
            foreach (var text in result.GetValue(destinations) ?? [])
            {
                if (!Outbound.ResilienceSettings.TryParse(text, defaults, out var service, out var settings, out var error))
                {
                    return Fail(error);
                }
                perDestination[service] = settings;
            }
            Sidecar.DecisionLog.DecisionLogSettings? decisionLogSettings = null;
            Sidecar.DecisionLog.OtlpExportSettings? export = null;
            if (result.GetValue(decisionLogOtlp) is { } otlp)
            {
                if (result.GetValue(decisionLog) is null)
                {
                    return Fail("--decision-log-otlp exports the decision log's records and needs --decision-log DIR");
                }
                if (!Sidecar.DecisionLog.OtlpExportSettings.TryParse(otlp, out export, out var otlpError))
                {
                    return Fail(otlpError);
                }
            }
            if (result.GetValue(decisionLog) is { } decisionLogDir)
            {
                if (string.IsNullOrWhiteSpace(decisionLogDir))
                {
                    return Fail("--decision-log needs a directory");
                }
                if (result.GetValue(decisionLogSegment) < 4096)
                {
                    return Fail($"--decision-log-segment-bytes {result.GetValue(decisionLogSegment)} is below 4096");
                }
                if (result.GetValue(checkpointRecords) < 1 || result.GetValue(checkpointInterval) <= TimeSpan.Zero)
                {
                    return Fail("--decision-log-checkpoint-records and --decision-log-checkpoint-interval must be positive");
                }
                decisionLogSettings = new Sidecar.DecisionLog.DecisionLogSettings(Path.GetFullPath(decisionLogDir), result.GetValue(decisionLogSegment),
                    result.GetValue(checkpointRecords), result.GetValue(checkpointInterval)) { Export = export };
            }
            return run(new SidecarOptions
            {
                ControlPlane = address,
                BootstrapBundle = bundle,
                Proof = proof,
                AdminPort = result.GetValue(adminPort),
                HealthPort = result.GetValue(healthPort),
                AppProbes = appProbes,
                InboundEndpoint = new System.Net.IPEndPoint(inboundIp, result.GetValue(inboundPort)),
                OutboundPort = result.GetValue(outboundPort),
                AppPorts = result.GetValue(appPorts) ?? [],
                TcpPorts = result.GetValue(tcpPorts) ?? [],
                ServiceAddress = serviceIp,
                ProbePaths = result.GetValue(probePaths) ?? [],
                EscapedSlashes = escaped,
                ExplainDenials = result.GetValue(explainDenials),
                Http1FastPath = result.GetValue(http1FastPath),
                AccessLog = accessLogMode == "json",
                Resilience = defaults,
                DestinationResilience = perDestination,
                TcpIdleTimeout = result.GetValue(tcpIdle),
                Observations = result.GetValue(observations),
                ObservationBuffer = result.GetValue(observationBuffer),
                DecisionLog = decisionLogSettings,
            }, cancellation);
        });
        return command;
    }

    /// <summary>
    /// Why <paramref name="path"/> cannot be a probe path, or null: the policy compiler takes only an exact absolute path
    /// (its path syntax, <c>PolicySyntax.ValidatePath</c>, without a '*'). That check is internal to the policy project, so
    /// it is repeated here, where a bad value can still be refused before anything is spent.
    /// </summary>
    internal static string? ProbePathError(string path)
    {
        if (path.Length == 0)
        {
            return "it is empty";
        }
        if (path[0] != '/')
        {
            return "it must start with '/'";
        }
        foreach (var c in path)
        {
            if (c is '*' or '?' or '#')
            {
                return $"'{c}' is not allowed: a probe path is matched exactly, without a pattern, query or fragment";
            }
            if (char.IsWhiteSpace(c) || char.IsControl(c))
            {
                return "it contains whitespace or a control character";
            }
        }
        return null;
    }

    private static Task<int> Fail(string error)
    {
        Console.Error.WriteLine($"ztm-sidecar: {error}");
        return Task.FromResult(CommandLineOptions.UsageError);
    }
}
