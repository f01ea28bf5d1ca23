using System.CommandLine;
using System.Security.Cryptography;
using Grpc.Core;
using Grpc.Net.Client;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.Cli;

/// <summary>
/// <c>ztmctl</c>: the operator CLI. It talks only to the control plane's gRPC admin API, over mTLS with the
/// operator credential named by the config (<c>--config</c>, else <c>$ZTM_CONFIG</c>, else <c>~/.ztm/config</c>).
/// Exit codes: 0 done, 1 the control plane refused, 2 bad command line, 3 no config or control plane unreachable,
/// 4 <c>policy test</c> says the request would be denied. <c>check</c> exits 1 when a check fails.
/// </summary>
internal static class Ztmctl
{
    public const int Refused = 1;
    public const int UsageError = ZeroTrustMesh.CommandLine.CommandLineOptions.UsageError;
    public const int Unreachable = 3;
    /// <summary><c>policy test</c>: the request would be denied.</summary>
    public const int Denied = 4;

    internal static readonly Option<string?> ConfigOption = new("--config")
    {
        Description = $"ztm config file (default ${OperatorConfig.EnvironmentVariable} or ~/.ztm/config)",
        Recursive = true,
    };

    internal static readonly Option<string> OutputOption = new("--output", "-o")
    {
        Description = "Output format: table, json (yaml for get, token for token create)",
        DefaultValueFactory = _ => "table",
        Recursive = true,
    };

    /// <summary>A CLI process starts cold (JIT, first TLS handshake): on a loaded host 5 s to connect and handshake was
    /// too short. An address that refuses still fails at once.</summary>
    internal static readonly Option<TimeSpan> ConnectTimeoutOption = WithRecursive(ZeroTrustMesh.CommandLine.CommandLineOptions.Duration(
        "--connect-timeout", "How long to wait for the control plane's connection and TLS handshake", "20s"));

    private static Option<TimeSpan> WithRecursive(Option<TimeSpan> option)
    {
        option.Recursive = true;
        return option;
    }

    public static RootCommand Command()
    {
        OutputOption.AcceptOnlyFromAmong("table", "json", "token", "yaml");
        var root = new RootCommand("ztmctl: operate a ZeroTrustMesh control plane") { ConfigOption, OutputOption, ConnectTimeoutOption };
        root.Subcommands.Add(TokenCommands.Command());
        root.Subcommands.Add(CaCommands.Command());
        root.Subcommands.Add(CheckCommand.Command());
        root.Subcommands.Add(ApiCommands.Command());
        root.Subcommands.Add(AuditCommands.Command());
        root.Subcommands.Add(AnomalyCommands.Command());
        foreach (var command in PolicyCommands.Commands())
        {
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>Runs one admin call: loads the config, opens the mTLS channel, maps failures to one line and an exit code.</summary>
    public static async Task<int> CallAsync(ParseResult parse, Func<GrpcChannel, CancellationToken, Task<int>> call, CancellationToken cancellation)
    {
        var configPath = parse.GetValue(ConfigOption) ?? OperatorConfig.DefaultPath;
        OperatorConfig config;
        TrustBundle bundle;
        System.Security.Cryptography.X509Certificates.X509Certificate2 credential;
        try
        {
            if (!File.Exists(configPath))
            {
                return Fail(Unreachable, $"no config at {configPath}: start ztm-controlplane on this host, or pass --config or set ${OperatorConfig.EnvironmentVariable}");
            }
            config = OperatorConfig.Load(configPath);
            bundle = TrustBundle.FromPem(config.TrustDomain, File.ReadAllText(config.TrustBundlePath));
            credential = Pem.LoadCertificateWithKey(config.CertificatePath, config.KeyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or CryptographicException or ArgumentException)
        {
            return Fail(Unreachable, $"cannot read the config {configPath}: {e.Message}");
        }

        using var channel = ControlPlaneChannel.Create(new Uri(config.Address), () => bundle, () => credential, TimeProvider.System,
            parse.GetValue(ConnectTimeoutOption));
        try
        {
            return await call(channel, cancellation);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded
            || (e.StatusCode is StatusCode.Cancelled && !cancellation.IsCancellationRequested && e.Status.DebugException is OperationCanceledException))
        {
            // A connect timeout surfaces as Cancelled with no detail: the reason is in the exception underneath.
            return Fail(Unreachable, $"cannot reach the control plane at {config.Address}: {Reason(e)}");
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unimplemented)
        {
            // The control plane does not take this command in its mode (policy in Kubernetes is written with kubectl).
            return Fail(UsageError, e.Status.Detail);
        }
        catch (RpcException e)
        {
            return Fail(Refused, e.Status.Detail.Length > 0 ? $"{e.Status.Detail} ({e.StatusCode})" : Reason(e));
        }
    }

    /// <summary>The status's detail, or else the innermost exception's message: never an empty line.</summary>
    internal static string Reason(RpcException e)
    {
        if (e.Status.Detail.Length > 0)
        {
            return e.Status.Detail;
        }
        var inner = e.Status.DebugException;
        while (inner?.InnerException is { } next)
        {
            inner = next;
        }
        return inner is null ? e.StatusCode.ToString() : $"{inner.Message} ({e.StatusCode})";
    }

    public static int Fail(int code, string message)
    {
        Console.Error.WriteLine($"ztmctl: {message}");
        return code;
    }
}
