using System.CommandLine;
using System.Net;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane;

/// <summary>An operator-supplied CA (plug-in CA) instead of the one the control plane creates.</summary>
internal sealed record PlugInCa(string CertificatePath, string KeyPath, string? BundlePath, string? ChainPath);

/// <summary>Everything the control plane is configured with; parsed and validated once at start.</summary>
internal sealed class ControlPlaneOptions
{
    public static readonly TimeSpan MinSvidTtl = TimeSpan.FromMinutes(1);
    public static readonly TimeSpan MaxSvidTtl = TimeSpan.FromDays(1);
    public static readonly TimeSpan MaxJoinTokenTtl = TimeSpan.FromDays(1);

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

    /// <summary>Largest gRPC message accepted; a CSR is a few hundred bytes.</summary>
    public int MaxRequestBytes { get; init; } = 64 * 1024;

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

        var command = new RootCommand("ZeroTrustMesh control plane: the mesh CA and identity issuance over gRPC")
        {
            dataDir, listen, port, metricsPort, trustDomain, svidTtl, tokenTtl, operatorConfig, caCert, caKey, caBundle, caChain,
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

    private static Task<int> Fail(string error)
    {
        Console.Error.WriteLine($"ztm-controlplane: {error}");
        return Task.FromResult(CommandLineOptions.UsageError);
    }

    private static string? FullPathOrNull(string? path) => path is null ? null : Path.GetFullPath(path);
}
