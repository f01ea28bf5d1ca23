using System.Net;
using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// ztmctl when the control plane cannot be reached: exit 3 and one line that says why, never an empty reason (a
/// connect timeout surfaces in gRPC as Cancelled with no detail; that once printed "ztmctl:  (Cancelled)").
/// </summary>
public sealed class ZtmctlConnectionTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task An_address_that_never_answers_the_handshake_fails_after_the_connect_timeout_with_the_reason()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        // Accepts TCP, never says a word: the TLS handshake waits until --connect-timeout.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var silentAddress = $"https://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/";
        var config = OperatorConfig.Load(controlPlane.OperatorConfigPath) with { Address = silentAddress };
        var configPath = Path.Combine(Path.GetDirectoryName(controlPlane.OperatorConfigPath)!, "silent-config");
        config.Save(configPath);

        var (exit, _, stderr) = await _mesh.ZtmctlAsync("--config", configPath, "--connect-timeout", "1s", "ca", "status");

        Assert.Equal(3, exit);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"ztmctl: cannot reach the control plane at {silentAddress}: ", line, StringComparison.Ordinal);
        Assert.Contains("ConnectTimeout", line, StringComparison.Ordinal);

        // A bad duration is a usage error; the real address still answers with the default timeout.
        Assert.Equal(2, (await _mesh.ZtmctlAsync("--connect-timeout", "soon", "ca", "status")).ExitCode);
        Assert.Equal(0, (await _mesh.ZtmctlAsync("ca", "status")).ExitCode);
    }
}
