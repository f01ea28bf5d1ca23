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
}
