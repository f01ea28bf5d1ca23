using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>What an external proxy pair (HAProxy, nginx) is set up with: the mesh's control plane for its SVIDs, the app's ports, the run's temp directory.</summary>
internal sealed record PairSetup(ControlPlaneProcess ControlPlane, int AppHttpPort, int AppGrpcPort, string Root, IReadOnlyDictionary<string, string> Environment,
    string HttpPath, string GrpcPath);

/// <summary>
/// A running external proxy pair doing the sidecar pair's job: <see cref="Http1"/> takes plain HTTP/1.1 on the client
/// side, <see cref="H2c"/> (when supported) h2c prior knowledge for HTTP/2 and gRPC; the client side originates mTLS with
/// a client SVID to the server side (<see cref="ServerSide"/>, client certificates verified against the mesh CA), which
/// speaks plain HTTP to the app. <see cref="StartAnotherServerSide"/> starts one more server side on a fresh port (for
/// exec → ready), which the caller stops.
/// </summary>
internal sealed record ProxyPair(LoadProcess Client, LoadProcess Server, Uri Http1, Uri? H2c, string? H2Skipped, Uri ServerSide,
    Func<CancellationToken, Task<(LoadProcess Process, Uri Url)>> StartAnotherServerSide)
{
    /// <summary>Writes <c>ca.pem</c> (the mesh bundle), <c>client.pem</c> and <c>server.pem</c> (SVID chain + key, owner-only) into <paramref name="dir"/>.</summary>
    public static async Task WriteCertificatesAsync(PairSetup setup, string dir, string prefix, CancellationToken cancellation)
    {
        File.Copy(Path.Combine(setup.ControlPlane.DataDir, "bundle.pem"), Path.Combine(dir, "ca.pem"));
        AtomicFile.WriteOwnerOnly(Path.Combine(dir, "client.pem"), await MeshSetup.SvidPemAsync(setup.ControlPlane, prefix + "-client", cancellation));
        AtomicFile.WriteOwnerOnly(Path.Combine(dir, "server.pem"), await MeshSetup.SvidPemAsync(setup.ControlPlane, prefix + "-server", cancellation));
    }
}
