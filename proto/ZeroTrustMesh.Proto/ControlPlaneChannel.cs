using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Proto;

/// <summary>
/// A gRPC channel to the control plane over mTLS. The server must present an SVID for
/// <c>spiffe://td/ztm/controlplane</c> that chains to the trust bundle, whatever host name was dialled;
/// the client presents its own certificate when it has one (renewal, operator calls).
/// </summary>
public static class ControlPlaneChannel
{
    public static SpiffeId ServerId(string trustDomain) => SpiffeId.ForMesh(trustDomain, "controlplane");

    /// <param name="bundle">Read at each new connection, so a followed trust bundle is used from then on.</param>
    /// <param name="clientCertificate">Read at each new connection, so a renewed certificate is used from then on.</param>
    /// <param name="refused">Called with the reason when the server's certificate is refused: the call itself fails with
    /// only "the remote certificate was rejected", which does not say why.</param>
    public static GrpcChannel Create(Uri address, Func<TrustBundle> bundle, Func<X509Certificate2?> clientCertificate, TimeProvider time, TimeSpan? connectTimeout = null,
        Action<SvidVerification>? refused = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(5),
            EnableMultipleHttp2Connections = true,
            // Renewal must authenticate with the current certificate, not the one a pooled connection was opened with.
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate()!,
                RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                {
                    var verified = certificate is null
                        ? SvidVerification.Invalid(SvidFailure.NoCertificate, "no certificate was presented")
                        : VerifyServer(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()), chain, bundle(), time.GetUtcNow());
                    if (!verified.IsValid)
                    {
                        refused?.Invoke(verified);
                    }
                    return verified.IsValid;
                },
            },
        };
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 4 * 1024 * 1024,
        });
    }

    /// <summary>The server's certificate must be the control plane's SVID in the bundle's trust domain, usable as a server's.</summary>
    public static SvidVerification VerifyServer(X509Certificate2 leaf, X509Chain? chain, TrustBundle bundle, DateTimeOffset now)
    {
        var presented = chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>() ?? [];
        var result = SvidVerifier.Verify(leaf, presented, bundle, now, purpose: SvidPurpose.Server);
        if (result.IsValid && result.Id != ServerId(bundle.TrustDomain))
        {
            return SvidVerification.Invalid(SvidFailure.UnexpectedIdentity, $"server is '{result.Id}', not the control plane");
        }
        return result;
    }
}
