using ZeroTrustMesh.KubernetesDouble;

namespace ZeroTrustMesh.ControlPlane.Tests;

/// <summary>
/// What the tests of several control-plane replicas share: one Kubernetes API double, a data directory per replica under
/// one temporary directory, and the replicas started, all disposed together.
/// </summary>
internal sealed class ReplicaCluster(string directoryPrefix) : IAsyncDisposable
{
    private readonly List<KubernetesReplicaParts> _replicas = [];

    public string Dir { get; } = Directory.CreateTempSubdirectory(directoryPrefix).FullName;

    public KubernetesApiDouble Api { get; private set; } = null!;

    public async Task InitializeAsync() => Api = await KubernetesApiDouble.StartAsync();

    /// <summary>Disposed with the cluster.</summary>
    public KubernetesReplicaParts Track(KubernetesReplicaParts replica)
    {
        _replicas.Add(replica);
        return replica;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.DisposeAsync();
        }
        await Api.DisposeAsync();
        Directory.Delete(Dir, recursive: true);
    }
}
