using Xunit.Abstractions;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// One real control plane shared by the tests of a class (xunit runs them one after another), so a
/// class pays for one process start. Its output goes to whichever test is running.
/// </summary>
public abstract class ControlPlaneFixture : IAsyncLifetime
{
    private readonly CurrentTestOutput _output = new();
    private readonly TestMesh _mesh;

    protected ControlPlaneFixture() => _mesh = new TestMesh(_output);

    internal ControlPlane ControlPlane { get; private set; } = null!;

    /// <summary>The mesh the control plane runs in; fixtures start more processes in it.</summary>
    internal TestMesh Mesh => _mesh;

    /// <summary>Extra command-line arguments of the control plane.</summary>
    protected virtual IEnumerable<string> Arguments => [];

    /// <summary>Sends the control plane's output to this test from now on.</summary>
    public void AttachOutput(ITestOutputHelper output) => _output.Current = output;

    /// <summary>Runs before the control plane starts, with its (empty) data directory.</summary>
    protected virtual void PrepareDataDir(string dataDir)
    {
    }

    public virtual async Task InitializeAsync()
    {
        var dataDir = Path.Combine(_mesh.Root, "controlplane");
        Directory.CreateDirectory(dataDir);
        PrepareDataDir(dataDir);
        ControlPlane = await _mesh.StartControlPlaneAsync(dataDir: dataDir, extraArgs: [.. Arguments]);
    }

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    private sealed class CurrentTestOutput : ITestOutputHelper
    {
        public ITestOutputHelper? Current { get; set; }

        public void WriteLine(string message) => Current?.WriteLine(message);

        public void WriteLine(string format, params object[] args) => Current?.WriteLine(format, args);
    }
}
