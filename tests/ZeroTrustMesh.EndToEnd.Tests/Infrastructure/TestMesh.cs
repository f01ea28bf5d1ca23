using System.Diagnostics;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Grpc.Net.Client;
using Xunit.Abstractions;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A mesh on this host for one test: its own temporary directory (also HOME, so nothing touches the
/// user's ~/.ztm), the real executables as processes on port 0, all stopped and removed at the end.
/// </summary>
internal sealed class TestMesh(ITestOutputHelper output) : IAsyncDisposable
{
    private readonly List<MeshProcess> _processes = [];

    public string Root { get; } = Directory.CreateTempSubdirectory("ztm-e2e-").FullName;

    public ITestOutputHelper Output => output;

    /// <summary>Environment for every process: an isolated HOME so the default config path is ours.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["HOME"] = Root,
        ["ZTM_CONFIG"] = "",
        ["ZTM_DATA_DIR"] = "",
        ["DOTNET_NOLOGO"] = "1",
    };

    public async Task<ControlPlane> StartControlPlaneAsync(string name = "controlplane", string? dataDir = null, int port = 0, params string[] extraArgs)
    {
        dataDir ??= Path.Combine(Root, name);
        var process = Track(MeshProcess.Start(name, Executables.ControlPlane,
            ["--data-dir", dataDir, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--metrics-port", "0", .. extraArgs], output, Environment));
        var listening = await process.WaitForLineAsync("ztm-controlplane: listening on ");
        var address = new Uri(listening[(listening.IndexOf("https://", StringComparison.Ordinal))..].Trim());
        var metrics = await process.WaitForLineAsync("ztm-controlplane: metrics listening on ");
        return new ControlPlane(this, process, address, dataDir) { Metrics = new Uri(metrics[metrics.IndexOf("http://", StringComparison.Ordinal)..].Trim()) };
    }

    public Task<Sidecar> StartSidecarAsync(ControlPlane controlPlane, string joinToken, string name = "sidecar", params string[] extraArgs) =>
        StartSidecarAsync(controlPlane, joinToken, name, new Dictionary<string, string>(), extraArgs);

    /// <summary>A sidecar with variables of its own on top of <see cref="Environment"/> (<c>ZTM_APP_PROBES</c>, as the injector sets it).</summary>
    public async Task<Sidecar> StartSidecarAsync(ControlPlane controlPlane, string joinToken, string name, IReadOnlyDictionary<string, string> environment, params string[] extraArgs)
    {
        var tokenFile = Path.Combine(Root, name + ".token");
        await File.WriteAllTextAsync(tokenFile, joinToken);
        var process = Track(MeshProcess.Start(name, Executables.Sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token-file", tokenFile,
                "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0", .. extraArgs],
            output, Environment.Concat(environment).ToDictionary()));
        var listening = await process.WaitForLineAsync("ztm-sidecar: admin listening on ");
        var start = listening.IndexOf("http://", StringComparison.Ordinal);
        var admin = new Uri(listening[start..listening.IndexOf(' ', start)]);
        var inbound = (await process.WaitForLineAsync("ztm-sidecar: inbound listening on "))["ztm-sidecar: inbound listening on ".Length..].Split(' ')[0];
        var outbound = (await process.WaitForLineAsync("ztm-sidecar: outbound listening on "))["ztm-sidecar: outbound listening on ".Length..].Trim();
        return new Sidecar(process, admin, System.Net.IPEndPoint.Parse(inbound), System.Net.IPEndPoint.Parse(outbound));
    }

    /// <summary>Runs ztmctl to completion with this mesh's HOME.</summary>
    public async Task<(int ExitCode, string Stdout, string Stderr)> ZtmctlAsync(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Executables.Ztmctl);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (key, value) in Environment)
        {
            start.Environment[key] = value;
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        output.WriteLine($"[ztmctl {string.Join(' ', args)}] exit {process.ExitCode}\n{await stdout}{await stderr}");
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Stops and disposes <paramref name="process"/> with the mesh.</summary>
    public MeshProcess Track(MeshProcess process)
    {
        _processes.Add(process);
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // a process may still hold a file for a moment; the OS cleans temp
        }
    }
}

/// <summary>A running <c>ztm-controlplane</c> and the ways a test talks to it.</summary>
internal sealed class ControlPlane(TestMesh mesh, MeshProcess process, Uri address, string dataDir)
{
    public MeshProcess Process => process;

    public Uri Address => address;

    public string DataDir => dataDir;

    /// <summary>The control plane's Prometheus endpoint (<c>http://127.0.0.1:PORT/metrics</c>).</summary>
    public required Uri Metrics { get; init; }

    public string BundlePath => Path.Combine(dataDir, "bundle.pem");

    public string TrustDomain { get; init; } = SpiffeId.DefaultTrustDomain;

    public TrustBundle Bundle => TrustBundle.FromPem(TrustDomain, File.ReadAllText(BundlePath));

    public string OperatorConfigPath => Path.Combine(mesh.Root, ".ztm", "config");

    public X509Certificate2 OperatorCertificate =>
        Pem.LoadCertificateWithKey(Path.Combine(dataDir, "operator", "operator.crt"), Path.Combine(dataDir, "operator", "operator.key"));

    /// <summary>A channel that presents <paramref name="clientCertificate"/> (or none) and verifies the server is the control plane.</summary>
    public GrpcChannel Channel(X509Certificate2? clientCertificate = null) =>
        ControlPlaneChannel.Create(address, () => Bundle, () => clientCertificate, TimeProvider.System);

    /// <summary>Applies policy YAML through the admin API and returns the new policy version.</summary>
    public async Task<string> ApplyPolicyAsync(string yaml)
    {
        using var channel = Channel(OperatorCertificate);
        var response = await new PolicyAdmin.PolicyAdminClient(channel).ApplyAsync(new ApplyRequest { Source = "test.yaml", Yaml = yaml });
        return response.Version;
    }

    /// <summary>Lets every workload of namespace shop call <paramref name="service"/>: for tests of the data plane, not of policy.</summary>
    public Task<string> AllowNamespaceAsync(string service) => ApplyPolicyAsync(AllowNamespaceYaml(service));

    /// <summary>The policy <see cref="AllowNamespaceAsync"/> applies, for tests that apply it another way (ztmctl in a namespace).</summary>
    public static string AllowNamespaceYaml(string service) => $$"""
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: {{service}}-from-shop
          namespace: shop
        spec:
          selector:
            service: {{service}}
          action: ALLOW
          rules:
            - from:
                - source:
                    namespaces: ["shop"]
        """;

    public async Task<string> MintTokenAsync(string @namespace = "shop", string serviceAccount = "orders", uint ttlSeconds = 600)
    {
        using var channel = Channel(OperatorCertificate);
        var response = await new IdentityAdmin.IdentityAdminClient(channel).CreateJoinTokenAsync(
            new CreateJoinTokenRequest { Namespace = @namespace, ServiceAccount = serviceAccount, TtlSeconds = ttlSeconds });
        return response.Token;
    }
}

/// <summary>A running <c>ztm-sidecar</c> and its admin endpoint.</summary>
internal sealed class Sidecar(MeshProcess process, Uri admin, System.Net.IPEndPoint inbound, System.Net.IPEndPoint outbound)
{
    /// <summary>The inbound mTLS listener other sidecars call.</summary>
    public System.Net.IPEndPoint Inbound => inbound;

    /// <summary>The outbound listener the local app calls (HTTP proxy, Host-addressed, h2c, CONNECT).</summary>
    public System.Net.IPEndPoint Outbound => outbound;

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    public MeshProcess Process => process;

    public Uri Admin => admin;

    public async Task<(int Status, string Body)> ReadyAsync()
    {
        using var response = await Http.GetAsync(new Uri(admin, "/healthz/ready"));
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    public async Task<JsonElement> ConfigDumpAsync() => await Http.GetFromJsonAsync<JsonElement>(new Uri(admin, "/config_dump"));

    /// <summary>Waits until the sidecar enforces config <paramref name="version"/> (its "config vN applied" line).</summary>
    public Task WaitForPolicyAsync(string version) => process.WaitForLineAsync($"config {version} applied");

    /// <summary>The identity section of /config_dump once the sidecar holds a certificate (its "svid issued" line).</summary>
    public async Task<JsonElement> WaitForIdentityAsync()
    {
        await process.WaitForLineAsync("svid issued ");
        return (await ConfigDumpAsync()).GetProperty("identity");
    }
}
