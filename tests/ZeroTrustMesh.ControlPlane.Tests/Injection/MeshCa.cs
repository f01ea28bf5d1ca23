using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests.Injection;

/// <summary>A mesh CA made in memory as the control plane makes its own (<see cref="FileCaStore.CreateRoot"/>).</summary>
internal static class MeshCa
{
    public static CertificateAuthority Create(TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var root = FileCaStore.CreateRoot(SpiffeId.DefaultTrustDomain, time);
        return new CertificateAuthority(root, [], new TrustBundle(SpiffeId.DefaultTrustDomain, [X509CertificateLoader.LoadCertificate(root.RawData)], 1), time);
    }
}
