using System.CommandLine;
using System.Security.Cryptography;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar;

/// <summary>Everything the sidecar is configured with; parsed and validated once at start.</summary>
internal sealed class SidecarOptions
{
    public const string JoinTokenVariable = "ZTM_JOIN_TOKEN";

    public required Uri ControlPlane { get; init; }
    public required TrustBundle BootstrapBundle { get; init; }
    public required string JoinToken { get; init; }
    public required int AdminPort { get; init; }

    public static RootCommand Command(Func<SidecarOptions, CancellationToken, Task<int>> run)
    {
        var controlPlane = new Option<string>("--control-plane") { Description = "Control plane address", DefaultValueFactory = _ => "https://127.0.0.1:15012" };
        var trustBundle = new Option<string>("--trust-bundle") { Description = "PEM trust bundle to verify the control plane with (ztm-controlplane prints where it is)", Required = true };
        var trustDomain = new Option<string>("--trust-domain") { Description = "SPIFFE trust domain", DefaultValueFactory = _ => SpiffeId.DefaultTrustDomain };
        var joinToken = new Option<string?>("--join-token") { Description = $"Join token for the first certificate (or ${JoinTokenVariable}; prefer --join-token-file)" };
        var joinTokenFile = new Option<string?>("--join-token-file") { Description = "File holding the join token" };
        var adminPort = new Option<int>("--admin-port") { Description = "Admin port on 127.0.0.1 (/healthz/ready, /config_dump); 0 picks a free one", DefaultValueFactory = _ => 15020 };

        var command = new RootCommand("ZeroTrustMesh sidecar: the per-workload proxy")
        {
            controlPlane, trustBundle, trustDomain, joinToken, joinTokenFile, adminPort,
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
                return Fail($"a join token is needed: --join-token-file, --join-token or ${JoinTokenVariable} (mint one with 'ztmctl token create')");
            }
            if (result.GetValue(adminPort) is < 0 or > 65535)
            {
                return Fail("--admin-port must be between 0 and 65535");
            }
            return run(new SidecarOptions
            {
                ControlPlane = address,
                BootstrapBundle = bundle,
                JoinToken = token.Trim(),
                AdminPort = result.GetValue(adminPort),
            }, cancellation);
        });
        return command;
    }

    private static Task<int> Fail(string error)
    {
        Console.Error.WriteLine($"ztm-sidecar: {error}");
        return Task.FromResult(CommandLineOptions.UsageError);
    }
}
