using System.Globalization;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>Real processes with one-minute certificates: renewal without a readiness gap, and across a control-plane restart.</summary>
public sealed class RotationEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    // A one-minute SVID is renewed at about 30 s (half-life, plus the 10 s backdate, with jitter).
    private static readonly TimeSpan RenewalWithin = TimeSpan.FromSeconds(75);

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Sidecar_renews_at_half_life_without_a_gap_in_readiness()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync(extraArgs: ["--svid-ttl", "1m"]);
        var sidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync());
        var first = await sidecar.WaitForIdentityAsync();

        // Sample readiness the whole time until the renewal line appears.
        var renewed = sidecar.Process.WaitForLineAsync("svid renewed ", RenewalWithin);
        var samples = new List<(DateTimeOffset At, int Status)>();
        using (var ticks = new PeriodicTimer(TimeSpan.FromMilliseconds(100)))
        {
            while (!renewed.IsCompleted && await ticks.WaitForNextTickAsync())
            {
                samples.Add((DateTimeOffset.UtcNow, (await sidecar.ReadyAsync()).Status));
            }
        }
        await renewed;
        samples.Add((DateTimeOffset.UtcNow, (await sidecar.ReadyAsync()).Status));

        Assert.True(samples.Count > 50, $"only {samples.Count} readiness samples");
        Assert.All(samples, s => Assert.Equal(200, s.Status));

        var second = (await sidecar.ConfigDumpAsync()).GetProperty("identity");
        Assert.Equal(first.GetProperty("spiffeId").GetString(), second.GetProperty("spiffeId").GetString());
        Assert.NotEqual(first.GetProperty("serial").GetString(), second.GetProperty("serial").GetString());
        Assert.True(second.GetProperty("notAfter").GetDateTimeOffset() > first.GetProperty("notAfter").GetDateTimeOffset());

        // Renewed at half-life (with ±5% jitter), not at the last moment.
        var notBefore = first.GetProperty("notBefore").GetDateTimeOffset();
        var lifetime = first.GetProperty("notAfter").GetDateTimeOffset() - notBefore;
        var renewedAt = DateTimeOffset.Parse((await renewed)[..24], CultureInfo.InvariantCulture);
        Assert.InRange(renewedAt - notBefore, lifetime * 0.44, lifetime * 0.65);

        // The control plane saw a renewal authenticated by the current certificate, not the spent token.
        await controlPlane.Process.WaitForLineAsync(l => l.Contains("svid issued", StringComparison.Ordinal) && l.Contains("via=renewal", StringComparison.Ordinal), "renewal issuance");
    }

    [Fact]
    public async Task Control_plane_restart_keeps_the_trust_bundle_and_the_sidecar_reconnects_and_renews()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync(extraArgs: ["--svid-ttl", "1m"]);
        var bundleBefore = await File.ReadAllTextAsync(controlPlane.BundlePath);
        var sidecar = await _mesh.StartSidecarAsync(controlPlane, await controlPlane.MintTokenAsync());
        await sidecar.WaitForIdentityAsync();

        // Control plane down across the renewal time: the sidecar keeps its certificate and retries.
        await controlPlane.Process.StopAsync();
        await sidecar.Process.WaitForLineAsync("svid renew failed ", RenewalWithin);
        Assert.Equal(200, (await sidecar.ReadyAsync()).Status);

        var restarted = await _mesh.StartControlPlaneAsync(name: "controlplane-2", dataDir: controlPlane.DataDir, port: controlPlane.Address.Port, extraArgs: ["--svid-ttl", "1m"]);
        await restarted.Process.WaitForLineAsync("CA loaded in ");
        Assert.Equal(bundleBefore, await File.ReadAllTextAsync(restarted.BundlePath));

        await sidecar.Process.WaitForLineAsync("svid renewed ", TimeSpan.FromSeconds(45));
        Assert.Equal(200, (await sidecar.ReadyAsync()).Status);
        await restarted.Process.WaitForLineAsync(l => l.Contains("via=renewal", StringComparison.Ordinal), "renewal on the restarted control plane");
    }
}
