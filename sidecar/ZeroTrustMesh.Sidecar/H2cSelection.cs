using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace ZeroTrustMesh.Sidecar;

/// <summary>
/// Tells Kestrel's protocol selection "h2" on a cleartext connection that began with the HTTP/2 preface.
/// Kestrel reads the ALPN only when the connection also has a TLS feature, but a connection with a TLS feature
/// is https to every HTTP/2 stream on it, and a stream whose <c>:scheme</c> is <c>http</c> (every h2c request)
/// is then reset with PROTOCOL_ERROR. So the TLS feature lives only for the protocol selection: Kestrel reads
/// the TLS feature, then the ALPN, and that read removes the TLS feature before the first stream is created.
/// </summary>
internal sealed class H2cSelection(IFeatureCollection features) : ITlsApplicationProtocolFeature, ITlsConnectionFeature
{
    private static readonly ReadOnlyMemory<byte> H2 = "h2"u8.ToArray();

    public ReadOnlyMemory<byte> ApplicationProtocol
    {
        get
        {
            features.Set<ITlsConnectionFeature>(null);
            return H2;
        }
    }

    public System.Security.Cryptography.X509Certificates.X509Certificate2? ClientCertificate
    {
        get => null;
        set => throw new NotSupportedException();
    }

    public Task<System.Security.Cryptography.X509Certificates.X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) =>
        Task.FromResult<System.Security.Cryptography.X509Certificates.X509Certificate2?>(null);
}
