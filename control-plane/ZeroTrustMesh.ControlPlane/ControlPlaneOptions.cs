using System.CommandLine;
using System.Net;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane;

/// <summary>An operator-supplied CA (plug-in CA) instead of the one the control plane creates.</summary>
internal sealed record PlugInCa(string CertificatePath, string KeyPath, string? BundlePath, string? ChainPath);

/// <summary>The injection webhook: its HTTPS port, the serving certificate's DNS names, and what it injects.</summary>
internal sealed record WebhookOptions(int Port, IReadOnlyList<string> DnsNames, string InjectionConfigPath, InjectionConfig Injection);

/// <summary>
/// How the replicas elect the one that does singleton work (<c>--kubernetes</c>): a <c>coordination.k8s.io/v1</c> Lease,
/// with client-go's timing (a holder that has not renewed for <see cref="LeaseDuration"/> may be replaced; the holder
/// gives up when it cannot renew within <see cref="RenewDeadline"/>; every <see cref="RetryPeriod"/> a replica tries).
/// </summary>
internal sealed record LeaderElectionOptions(string LeaseName, string Identity, TimeSpan LeaseDuration, TimeSpan RenewDeadline, TimeSpan RetryPeriod)
{
    public const string DefaultLeaseName = "ztm-controlplane-leader";

    /// <summary>
    /// This replica's name in the Lease: the pod's (<c>$POD_NAME</c>, from the downward API), else the host's and the
    /// process's — two processes on one host must never both think they hold the Lease.
    /// </summary>
    public static string DefaultIdentity =>
        Environment.GetEnvironmentVariable("POD_NAME") is { Length: > 0 } pod ? pod : $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>The first thing wrong with these timings, or null.</summary>
    public string? Validate()
    {
        if (LeaseDuration < TimeSpan.FromSeconds(1) || LeaseDuration.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            return $"--leader-lease-duration must be a whole number of seconds, at least 1s (a Lease counts in seconds), not {Durations.Format(LeaseDuration)}";
        }
        if (RenewDeadline <= TimeSpan.Zero || RenewDeadline >= LeaseDuration)
        {
            return $"--leader-renew-deadline ({Durations.Format(RenewDeadline)}) must be shorter than --leader-lease-duration ({Durations.Format(LeaseDuration)}): the leader must stop before another may take over";
        }
        return RetryPeriod <= TimeSpan.Zero || RetryPeriod >= RenewDeadline
            ? $"--leader-retry-period ({Durations.Format(RetryPeriod)}) must be shorter than --leader-renew-deadline ({Durations.Format(RenewDeadline)})"
            : null;
    }
}

/// <summary>Everything the control plane is configured with; parsed and validated once at start.</summary>
internal sealed class ControlPlaneOptions
{
    public static readonly TimeSpan MinSvidTtl = TimeSpan.FromMinutes(1);
    public static readonly TimeSpan MaxSvidTtl = TimeSpan.FromDays(1);
    public static readonly TimeSpan MaxJoinTokenTtl = TimeSpan.FromDays(1);

    /// <summary>The audience of the projected service-account tokens sidecars present, unless <c>--token-audience</c> says otherwise.</summary>
    public const string DefaultTokenAudience = "ztm-controlplane";

    public required string DataDir { get; init; }
    public required IPAddress ListenAddress { get; init; }
    public required int Port { get; init; }
    public required string TrustDomain { get; init; }
    public required TimeSpan SvidTtl { get; init; }
    public required TimeSpan JoinTokenTtl { get; init; }
    public required string OperatorConfigPath { get; init; }
    public PlugInCa? PlugInCa { get; init; }

    /// <summary>Plain HTTP <c>/metrics</c> for Prometheus, on <see cref="ListenAddress"/>; 0 picks a free port.</summary>
    public int MetricsPort { get; init; } = 15014;

    /// <summary>The injection webhook, when <c>--webhook-port</c> is given.</summary>
    public WebhookOptions? Webhook { get; init; }

    /// <summary>The control plane's own namespace (never injected); <c>--namespace</c>, else <c>$POD_NAMESPACE</c>.</summary>
    public string? Namespace { get; init; }

    /// <summary>The MutatingWebhookConfiguration whose <c>caBundle</c> this control plane keeps current, if any.</summary>
    public string? WebhookConfiguration { get; init; }

    /// <summary>
    /// Runs with the Kubernetes API (<c>--kubernetes</c>, implied by <c>--webhook-configuration</c>): sidecars may prove
    /// who they are with a projected service-account token, checked with a TokenReview.
    /// </summary>
    public bool Kubernetes { get; init; }

    /// <summary>With <see cref="Kubernetes"/>: the Lease that elects the replica doing singleton work.</summary>
    public LeaderElectionOptions LeaderElection { get; init; } = new(
        LeaderElectionOptions.DefaultLeaseName, LeaderElectionOptions.DefaultIdentity, TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(2));

    /// <summary>With <see cref="Kubernetes"/>: the Secret that holds the CA (<c>--ca-secret</c>), created by the first replica or supplied by the operator.</summary>
    public string CaSecret { get; init; } = DefaultCaSecret;

    public const string DefaultCaSecret = "ztm-ca";

    /// <summary>The audience a service-account token must have been issued for (<c>--token-audience</c>); the TokenReview asks for it.</summary>
    public string TokenAudience { get; init; } = DefaultTokenAudience;

    /// <summary>Lifetime of a root the control plane creates (the first one, and each one a rotation prepares).</summary>
    public TimeSpan CaRootLifetime { get; init; } = Ca.FileCaStore.RootLifetime;

    /// <summary>A rotation starts by itself once the signing root has less than this left to live.</summary>
    public TimeSpan CaRotateBefore { get; init; } = TimeSpan.FromDays(365);

    /// <summary>Clock skew allowed between hosts: the previous root is retired this long after its last leaf expired.</summary>
    public TimeSpan CaRotationSkew { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// After this process starts, how long a rotation step that waits for sidecars waits first: the sidecars connected to
    /// the control plane before are not known again until they reconnect (their backoff is at most 30 s).
    /// </summary>
    public TimeSpan CaRotationReconnectGrace { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>How often the leader checks whether a rotation step's gate is open (and whether the root nears expiry).</summary>
    public TimeSpan CaRotationPoll { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// With <see cref="Kubernetes"/>: every replica rewrites the report of its sidecars every <see cref="CaRotationPoll"/>;
    /// one that has not changed for this long is a replica that stopped, and is ignored (<c>Ca/ConfigMapBundleFollowers</c>).
    /// </summary>
    public TimeSpan ReplicaReportTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest gRPC message accepted; a CSR is a few hundred bytes.</summary>
    public int MaxRequestBytes { get; init; } = 64 * 1024;

    /// <summary>API discovery from sidecars' observations: bounds, pins, when a declared operation is unused (<c>--api-*</c>).</summary>
    public Discovery.ApiInventoryOptions ApiInventory { get; init; } = new();

    /// <summary>
    /// <c>--l4-mode on</c>: HTTP ports whose policies need only L4 attributes are relayed as bytes after the mTLS check
    /// (<see cref="Policy.L4.L4Eligibility"/>). Off by default: such a port loses per-request metrics, access log and API
    /// discovery, which an operator should choose (ztunnel's users opt in too).
    /// </summary>
    public bool L4Mode { get; init; }

    public static string DefaultDataDir =>
        Environment.GetEnvironmentVariable("ZTM_DATA_DIR") is { Length: > 0 } fromEnv
            ? fromEnv
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ztm", "controlplane");

    /// <summary>The command line of <c>ztm-controlplane</c>; <paramref name="run"/> gets the validated options.</summary>
    public static RootCommand Command(Func<ControlPlaneOptions, CancellationToken, Task<int>> run)
    {
        var dataDir = new Option<string>("--data-dir") { Description = "Where the CA, trust bundle, tokens and operator credential live (default $ZTM_DATA_DIR or ~/.ztm/controlplane)" };
        var listen = new Option<string>("--listen") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "gRPC port (TLS); 0 picks a free one", DefaultValueFactory = _ => 15012 };
        var metricsPort = new Option<int>("--metrics-port") { Description = "Prometheus metrics port (plain HTTP, /metrics) on the --listen address; 0 picks a free one", DefaultValueFactory = _ => 15014 };
        var trustDomain = new Option<string>("--trust-domain") { Description = "SPIFFE trust domain", DefaultValueFactory = _ => SpiffeId.DefaultTrustDomain };
        var svidTtl = CommandLineOptions.Duration("--svid-ttl", "Lifetime of issued workload certificates (1m..24h)", "1h");
        var tokenTtl = CommandLineOptions.Duration("--join-token-ttl", "Default lifetime of join tokens (..24h)", "10m");
        var operatorConfig = new Option<string>("--operator-config") { Description = "Where to write ztmctl's config (default $ZTM_CONFIG or ~/.ztm/config)" };
        var caCert = new Option<string?>("--ca-cert") { Description = "Plug-in CA: PEM CA certificate to sign with (with --ca-key)" };
        var caKey = new Option<string?>("--ca-key") { Description = "Plug-in CA: PEM private key of --ca-cert" };
        var caBundle = new Option<string?>("--ca-bundle") { Description = "Plug-in CA: PEM roots, when --ca-cert is an intermediate" };
        var caChain = new Option<string?>("--ca-chain") { Description = "Plug-in CA: PEM intermediates between --ca-cert and the roots" };
        var webhookPort = new Option<int?>("--webhook-port") { Description = "HTTPS port of the sidecar injection webhook (/inject); off unless given; 0 picks a free one" };
        var webhookDns = new Option<string[]>("--webhook-dns") { Description = "DNS name of the webhook's serving certificate (repeatable; default ztm-controlplane.<namespace>.svc[.cluster.local])" };
        var injectionConfig = new Option<string?>("--injection-config") { Description = "The injection config (JSON) the webhook injects from; required with --webhook-port" };
        var ns = new Option<string?>("--namespace") { Description = "The control plane's own namespace, never injected (default $POD_NAMESPACE)" };
        var webhookConfiguration = new Option<string?>("--webhook-configuration") { Description = "MutatingWebhookConfiguration whose caBundle to keep current through the Kubernetes API (in-cluster or $KUBECONFIG); implies --kubernetes" };
        var kubernetes = new Option<bool>("--kubernetes") { Description = "Use the Kubernetes API ($KUBECONFIG when set, else the pod's service account): sidecars prove who they are with a projected service-account token, checked with a TokenReview" };
        var caRootLifetime = CommandLineOptions.Duration("--ca-root-lifetime", "Lifetime of a CA root the control plane creates", "3650d");
        var caRotateBefore = CommandLineOptions.Duration("--ca-rotate-before", "Start a CA root rotation by itself when the root has less than this left", "365d");
        var caRotationSkew = CommandLineOptions.Duration("--ca-rotation-skew", "Clock skew allowed: the old root leaves the bundle this long after its last leaf expired", "1m");
        var caRotationPoll = CommandLineOptions.Duration("--ca-rotation-poll", "How often the leading replica checks whether the next rotation step may run", "5s");
        var caReconnectGrace = CommandLineOptions.Duration("--ca-rotation-reconnect-grace", "After a start, how long rotation steps wait for sidecars to reconnect before counting them", "1m");
        var replicaReportTimeout = CommandLineOptions.Duration("--replica-report-timeout", "With --kubernetes: a replica's report of which trust bundle its sidecars follow (rewritten every --ca-rotation-poll) that has not changed for this long is ignored: that replica stopped", "30s");
        var leaseDuration = CommandLineOptions.Duration("--leader-lease-duration", "With --kubernetes: how long the leader's Lease holds without renewal before another replica may take it", "15s");
        var renewDeadline = CommandLineOptions.Duration("--leader-renew-deadline", "With --kubernetes: the leader stops its singleton work when it cannot renew the Lease within this", "10s");
        var retryPeriod = CommandLineOptions.Duration("--leader-retry-period", "With --kubernetes: how often replicas try to take or renew the Lease", "2s");
        var caSecret = new Option<string>("--ca-secret") { Description = $"With --kubernetes: the Secret (in --namespace) holding the CA: created by the first replica, or yours in the cert-manager shape (tls.crt, tls.key, ca.crt)", DefaultValueFactory = _ => DefaultCaSecret };
        var apiUnusedAfter = CommandLineOptions.Duration("--api-unused-after", "API discovery: a declared operation not called for this long is unused (ztmctl api diff)", "24h");
        var apiMaxPaths = new Option<int>("--api-max-paths") { Description = "API discovery: distinct path segments kept per service; paths beyond it are counted, not kept", DefaultValueFactory = _ => new Discovery.ApiInventoryOptions().MaxPathsPerService };
        var l4Mode = new Option<string>("--l4-mode") { Description = "on: HTTP ports whose policies need only L4 attributes (caller identity, namespace, source IP, port) are relayed as bytes after the mTLS check, authorized once per connection; off: every HTTP request is parsed", DefaultValueFactory = _ => "off" };
        l4Mode.AcceptOnlyFromAmong("off", "on");
        var apiPins = new Option<string[]>("--api-pin") { Description = "API discovery: SERVICE=TEMPLATE, the operator's word on a template, both ways: orders.shop=/users/{id} makes that segment a parameter, orders.shop=/users/me keeps 'me' a word (repeatable)" };
        var tokenAudience = new Option<string?>("--token-audience") { Description = $"With --kubernetes: the audience of the sidecars' service-account tokens (default the injection config's tokenAudience, else {DefaultTokenAudience})" };

        var command = new RootCommand("ZeroTrustMesh control plane: the mesh CA and identity issuance over gRPC")
        {
            dataDir, listen, port, metricsPort, trustDomain, svidTtl, tokenTtl, operatorConfig, caCert, caKey, caBundle, caChain,
            webhookPort, webhookDns, injectionConfig, ns, webhookConfiguration, kubernetes, tokenAudience,
            caRootLifetime, caRotateBefore, caRotationSkew, caRotationPoll, caReconnectGrace, replicaReportTimeout,
            leaseDuration, renewDeadline, retryPeriod, caSecret,
            apiUnusedAfter, apiMaxPaths, apiPins, l4Mode,
        };
        command.SetAction((result, cancellation) =>
        {
            if ((result.GetValue(caCert) is null) != (result.GetValue(caKey) is null))
            {
                return Fail("--ca-cert and --ca-key go together");
            }
            if (!IPAddress.TryParse(result.GetValue(listen), out var listenAddress))
            {
                return Fail($"--listen '{result.GetValue(listen)}' is not an IP address");
            }
            var plugIn = result.GetValue(caCert) is { } cert
                ? new PlugInCa(Path.GetFullPath(cert), Path.GetFullPath(result.GetValue(caKey)!), FullPathOrNull(result.GetValue(caBundle)), FullPathOrNull(result.GetValue(caChain)))
                : null;
            var ownNamespace = result.GetValue(ns) ?? (Environment.GetEnvironmentVariable("POD_NAMESPACE") is { Length: > 0 } podNamespace ? podNamespace : null);
            if (ownNamespace is not null && !KubernetesNames.IsLabel(ownNamespace))
            {
                return Fail($"--namespace '{ownNamespace}' is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)");
            }
            var webhook = ParseWebhook(result.GetValue(webhookPort), result.GetValue(webhookDns) ?? [], result.GetValue(injectionConfig), ownNamespace, out var webhookError);
            if (webhookError is not null)
            {
                return Fail(webhookError);
            }
            var configurationName = result.GetValue(webhookConfiguration);
            if (configurationName is not null && !KubernetesNames.IsSubdomain(configurationName))
            {
                return Fail($"--webhook-configuration '{configurationName}' is not a Kubernetes object name (lower-case DNS subdomain)");
            }
            var useKubernetes = result.GetValue(kubernetes) || configurationName is not null;
            if (useKubernetes && KubernetesAccess.Describe() is { } noAccess)
            {
                return Fail($"{(result.GetValue(kubernetes) ? "--kubernetes" : "--webhook-configuration")} needs the Kubernetes API: {noAccess}");
            }
            var audience = ParseTokenAudience(result.GetValue(tokenAudience), useKubernetes, webhook, out var audienceError);
            if (audienceError is not null)
            {
                return Fail(audienceError);
            }
            if (!KubernetesNames.IsSubdomain(result.GetValue(caSecret)!))
            {
                return Fail($"--ca-secret '{result.GetValue(caSecret)}' is not a Kubernetes object name (lower-case DNS subdomain)");
            }
            if (useKubernetes && plugIn is not null)
            {
                return Fail("--ca-cert goes without --kubernetes: in Kubernetes the CA lives in a Secret (--ca-secret); put your CA there in the cert-manager shape (tls.crt, tls.key, ca.crt)");
            }
            var election = new LeaderElectionOptions(
                LeaderElectionOptions.DefaultLeaseName, LeaderElectionOptions.DefaultIdentity,
                result.GetValue(leaseDuration), result.GetValue(renewDeadline), result.GetValue(retryPeriod));
            if (election.Validate() is { } electionError)
            {
                return Fail(electionError);
            }
            if (!Discovery.ApiInventoryOptions.TryCreate(result.GetValue(apiUnusedAfter), result.GetValue(apiMaxPaths), result.GetValue(apiPins) ?? [], out var apiInventory, out var apiError))
            {
                return Fail(apiError);
            }
            var options = new ControlPlaneOptions
            {
                DataDir = Path.GetFullPath(result.GetValue(dataDir) ?? DefaultDataDir),
                ListenAddress = listenAddress,
                Port = result.GetValue(port),
                MetricsPort = result.GetValue(metricsPort),
                TrustDomain = result.GetValue(trustDomain)!,
                SvidTtl = result.GetValue(svidTtl),
                JoinTokenTtl = result.GetValue(tokenTtl),
                OperatorConfigPath = Path.GetFullPath(result.GetValue(operatorConfig) ?? OperatorConfig.DefaultPath),
                PlugInCa = plugIn,
                Webhook = webhook,
                Namespace = ownNamespace,
                WebhookConfiguration = configurationName,
                Kubernetes = useKubernetes,
                TokenAudience = audience,
                CaRootLifetime = result.GetValue(caRootLifetime),
                CaRotateBefore = result.GetValue(caRotateBefore),
                CaRotationSkew = result.GetValue(caRotationSkew),
                CaRotationPoll = result.GetValue(caRotationPoll),
                CaRotationReconnectGrace = result.GetValue(caReconnectGrace),
                ReplicaReportTimeout = result.GetValue(replicaReportTimeout),
                LeaderElection = election,
                CaSecret = result.GetValue(caSecret)!,
                ApiInventory = apiInventory,
                L4Mode = result.GetValue(l4Mode) == "on",
            };
            return options.Validate() is { } error ? Fail(error) : run(options, cancellation);
        });
        return command;
    }

    /// <summary>The first thing wrong with these options, or null.</summary>
    public string? Validate()
    {
        if (!SpiffeId.TryParse(SpiffeId.Scheme + TrustDomain, out _, out var error))
        {
            return $"--trust-domain '{TrustDomain}' is invalid: {error}";
        }
        if (SvidTtl < MinSvidTtl || SvidTtl > MaxSvidTtl)
        {
            return $"--svid-ttl must be between {Durations.Format(MinSvidTtl)} and {Durations.Format(MaxSvidTtl)}";
        }
        if (JoinTokenTtl > MaxJoinTokenTtl)
        {
            return $"--join-token-ttl must be at most {Durations.Format(MaxJoinTokenTtl)}";
        }
        if (CaRotateBefore >= CaRootLifetime)
        {
            return $"--ca-rotate-before ({Durations.Format(CaRotateBefore)}) must be shorter than --ca-root-lifetime ({Durations.Format(CaRootLifetime)}), or every new root would rotate at once";
        }
        if (CaRotateBefore < SvidTtl + CaRotationSkew)
        {
            return $"--ca-rotate-before ({Durations.Format(CaRotateBefore)}) must leave room for a rotation: at least --svid-ttl + --ca-rotation-skew ({Durations.Format(SvidTtl + CaRotationSkew)})";
        }
        if (ReplicaReportTimeout < 2 * CaRotationPoll)
        {
            return $"--replica-report-timeout ({Durations.Format(ReplicaReportTimeout)}) must be at least twice --ca-rotation-poll ({Durations.Format(CaRotationPoll)}): a live replica rewrites its report every poll";
        }
        if (MetricsPort is < 0 or > 65535)
        {
            return "--metrics-port must be between 0 and 65535";
        }
        if (MetricsPort != 0 && MetricsPort == Port)
        {
            return $"--metrics-port and --port must differ (both are {Port})";
        }
        return Port is < 0 or > 65535 ? "--port must be between 0 and 65535" : null;
    }

    /// <summary>The webhook's options, or null when it is off; <paramref name="error"/> says what is wrong.</summary>
    private static WebhookOptions? ParseWebhook(int? port, string[] dnsNames, string? configPath, string? ownNamespace, out string? error)
    {
        error = null;
        if (port is null)
        {
            if (dnsNames.Length > 0 || configPath is not null)
            {
                error = "--webhook-dns and --injection-config need --webhook-port";
            }
            return null;
        }
        if (port is < 0 or > 65535)
        {
            error = $"--webhook-port must be between 0 and 65535, not {port}";
            return null;
        }
        if (configPath is null)
        {
            error = "--injection-config is required with --webhook-port";
            return null;
        }
        if (dnsNames.Length == 0)
        {
            if (ownNamespace is null)
            {
                error = "--webhook-dns is required with --webhook-port when the namespace is not known (--namespace or $POD_NAMESPACE)";
                return null;
            }
            dnsNames = [$"ztm-controlplane.{ownNamespace}.svc", $"ztm-controlplane.{ownNamespace}.svc.cluster.local"];
        }
        if (dnsNames.FirstOrDefault(n => !KubernetesNames.IsSubdomain(n)) is { } bad)
        {
            error = $"--webhook-dns '{bad}' is not a DNS name (lower-case letters, digits, '-' and '.')";
            return null;
        }
        var fullPath = Path.GetFullPath(configPath);
        var config = InjectionConfig.Load(fullPath, out var errors);
        if (config is null)
        {
            error = $"--injection-config {fullPath} is invalid: {string.Join("; ", errors)}";
            return null;
        }
        return new WebhookOptions(port.Value, [.. dnsNames.Distinct(StringComparer.Ordinal)], fullPath, config);
    }

    /// <summary>
    /// The token audience: <c>--token-audience</c>, else the one the webhook mounts tokens for, else the default. A
    /// control plane that injects sidecars must accept the tokens it mounts, so the two may not differ.
    /// </summary>
    private static string ParseTokenAudience(string? given, bool kubernetes, WebhookOptions? webhook, out string? error)
    {
        error = null;
        if (given is null)
        {
            return webhook?.Injection.TokenAudience ?? DefaultTokenAudience;
        }
        if (!kubernetes)
        {
            error = "--token-audience needs --kubernetes (service-account tokens are checked through the Kubernetes API)";
        }
        else if (given.Length == 0 || given.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
        {
            error = $"--token-audience '{given}' must be a non-empty string without spaces";
        }
        else if (webhook is not null && webhook.Injection.TokenAudience != given)
        {
            error = $"--token-audience '{given}' differs from the injection config's tokenAudience '{webhook.Injection.TokenAudience}': injected sidecars would present tokens this control plane refuses";
        }
        return given;
    }

    private static Task<int> Fail(string error)
    {
        Console.Error.WriteLine($"ztm-controlplane: {error}");
        return Task.FromResult(CommandLineOptions.UsageError);
    }

    private static string? FullPathOrNull(string? path) => path is null ? null : Path.GetFullPath(path);
}
