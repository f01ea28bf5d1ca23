using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>What the sidecar says about a command line it cannot run with: one readable line, exit code 2, nothing spent.</summary>
public sealed class SidecarCommandLineTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task A_missing_trust_bundle_file_is_named_in_words_not_a_resource_key()
    {
        var missing = Path.Combine(_mesh.Root, "nonexistent.pem");

        var sidecar = _mesh.Track(MeshProcess.Start("sidecar", Executables.Sidecar,
            ["--control-plane", "https://127.0.0.1:1", "--trust-bundle", missing, "--join-token", "ztmjt_unused"], output, _mesh.Environment));

        Assert.Equal(2, await sidecar.Exited.WaitAsync(Mesh.Timeout));
        var line = Assert.Single(sidecar.Lines);
        Assert.Equal($"ztm-sidecar: cannot read the trust bundle {missing}: Could not find file '{missing}'.", line);
    }

    [Fact]
    public async Task A_decision_log_OTLP_address_that_is_not_an_http_URL_or_without_the_log_is_refused_with_exit_code_2()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        string[] common = ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token", "ztmjt_unused",
            "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0"];
        var logDir = Path.Combine(_mesh.Root, "decisions");
        foreach (var (arguments, line) in new[]
        {
            ((string[])["--decision-log", logDir, "--decision-log-otlp", "otel-collector:4318"],
                "ztm-sidecar: --decision-log-otlp 'otel-collector:4318' must be the http:// or https:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318"),
            (["--decision-log", logDir, "--decision-log-otlp", "grpc://otel-collector:4317"],
                "ztm-sidecar: --decision-log-otlp 'grpc://otel-collector:4317' must be the http:// or https:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318"),
            (["--decision-log-otlp", "http://otel-collector:4318"],
                "ztm-sidecar: --decision-log-otlp exports the decision log's records and needs --decision-log DIR"),
        })
        {
            var refused = _mesh.Track(MeshProcess.Start("sidecar-bad-otlp", Executables.Sidecar, [.. common, .. arguments], output, _mesh.Environment));
            Assert.Equal(2, await refused.Exited.WaitAsync(Mesh.Timeout));
            Assert.Equal(line, Assert.Single(refused.Lines));
        }
    }

    [Fact]
    public async Task A_bad_probe_path_is_refused_with_exit_code_2_before_the_join_token_is_spent()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var tokenFile = Path.Combine(_mesh.Root, "token");
        await File.WriteAllTextAsync(tokenFile, await controlPlane.MintTokenAsync("shop", "orders"));
        string[] common = ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token-file", tokenFile,
            "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0"];

        foreach (var (path, why) in new[]
        {
            ("notapath", "it must start with '/'"),
            ("", "it is empty"),
            ("/a/*", "'*' is not allowed: a probe path is matched exactly, without a pattern, query or fragment"),
        })
        {
            var refused = _mesh.Track(MeshProcess.Start("sidecar-bad-probe", Executables.Sidecar, [.. common, "--probe-path", "/healthz", "--probe-path", path], output, _mesh.Environment));
            Assert.Equal(2, await refused.Exited.WaitAsync(Mesh.Timeout));
            Assert.Equal($"ztm-sidecar: --probe-path '{path}' is not an exact path: {why}", Assert.Single(refused.Lines));
        }

        // The token was never presented: the same one still gets a certificate.
        var sidecar = _mesh.Track(MeshProcess.Start("sidecar", Executables.Sidecar, [.. common, "--probe-path", "/healthz"], output, _mesh.Environment));
        await sidecar.WaitForLineAsync("svid issued ");
    }

    [Fact]
    public async Task A_control_plane_of_another_trust_domain_is_named_as_the_reason_the_sidecar_cannot_start()
    {
        var started = await _mesh.StartControlPlaneAsync(extraArgs: ["--trust-domain", "example.org"]);
        var controlPlane = new ControlPlane(_mesh, started.Process, started.Address, started.DataDir) { TrustDomain = "example.org", Metrics = started.Metrics };
        var tokenFile = Path.Combine(_mesh.Root, "token");
        await File.WriteAllTextAsync(tokenFile, await controlPlane.MintTokenAsync("shop", "orders"));

        // The sidecar is told the default trust domain, cluster.local, and given the other domain's bundle.
        var sidecar = _mesh.Track(MeshProcess.Start("sidecar", Executables.Sidecar,
            ["--control-plane", controlPlane.Address.ToString(), "--trust-bundle", controlPlane.BundlePath, "--join-token-file", tokenFile,
             "--admin-port", "0", "--inbound-port", "0", "--outbound-port", "0"], output, _mesh.Environment));

        var line = await sidecar.WaitForLineAsync("svid sign failed attempt=1 ");
        Assert.Contains($"the control plane at {controlPlane.Address} presented a certificate this sidecar refuses: 'spiffe://example.org/ztm/controlplane' is not in trust domain 'cluster.local'",
            line, StringComparison.Ordinal);
        Assert.DoesNotContain("net_", line, StringComparison.Ordinal);
    }
}
