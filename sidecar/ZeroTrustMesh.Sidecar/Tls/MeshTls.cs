using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.Tls;

/// <summary>The verified SPIFFE ID of the peer on this connection; set once at the handshake, read by every request.</summary>
internal sealed class PeerIdentityFeature(SpiffeId id)
{
    public SpiffeId Id { get; } = id;
}

/// <summary>
/// mTLS between sidecars. Both sides present the current SVID (read at each handshake, so a renewal takes
/// effect on the next connection and never disturbs an established one) and verify the peer's SVID against
/// the trust bundle and the revocation list the sidecar holds now (a revoked peer fails with reason
/// <see cref="SvidFailure.Revoked"/>; connections established before the revocation are left alone).
/// With no valid certificate there is no handshake: fail closed.
/// </summary>
internal static class MeshTls
{
    /// <summary>ALPN of an opaque TCP stream inside the mesh's mTLS (the inbound listener relays it to a declared port).</summary>
    public static readonly SslApplicationProtocol TcpProtocol = new("ztm-tcp/1");

    public const SslProtocols Protocols = SslProtocols.Tls13;

    /// <summary>Server side (inbound): require a client SVID; the verified identity is published on <paramref name="onVerified"/>.</summary>
    public static SslServerAuthenticationOptions ServerOptions(IdentityState state, SidecarMetrics metrics, Action<SpiffeId> onVerified)
    {
        var identity = state.Valid ?? throw new AuthenticationException("this sidecar holds no valid certificate yet");
        return new SslServerAuthenticationOptions
        {
            ServerCertificateContext = identity.TlsContext,
            EnabledSslProtocols = Protocols,
            ClientCertificateRequired = true,
            ApplicationProtocols = [SslApplicationProtocol.Http2, TcpProtocol],
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            {
                var verified = Verify(certificate, chain, identity.Bundle, state.Revocations);
                if (!verified.IsValid)
                {
                    metrics.HandshakeFailed("inbound", verified.Failure);
                    return false;
                }
                onVerified(verified.Id);
                return true;
            },
        };
    }

    /// <summary>Client side (outbound): present our SVID, and accept only a server whose SVID is <paramref name="expected"/>.</summary>
    /// <param name="serverName">SNI: the destination service's name (a SPIFFE ID is not a host name).</param>
    public static SslClientAuthenticationOptions ClientOptions(IdentityState state, SidecarMetrics metrics, SpiffeId expected, string serverName, SslApplicationProtocol protocol) => new()
    {
        TargetHost = serverName,
        EnabledSslProtocols = Protocols,
        ApplicationProtocols = [protocol],
        LocalCertificateSelectionCallback = (_, _, _, _, _) =>
            state.Valid?.Certificate ?? throw new AuthenticationException("this sidecar holds no valid certificate yet"),
        RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
        {
            var bundle = state.Current?.Bundle;
            var verified = bundle is null
                ? SvidVerification.Invalid(SvidFailure.NoCertificate, "no trust bundle yet")
                : Verify(certificate, chain, bundle, state.Revocations);
            if (verified.IsValid && verified.Id != expected)
            {
                verified = SvidVerification.Invalid(SvidFailure.UnexpectedIdentity, $"server is '{verified.Id}', the destination may only be '{expected}'");
            }
            if (!verified.IsValid)
            {
                metrics.HandshakeFailed("outbound", verified.Failure);
            }
            return verified.IsValid;
        },
    };

    private static SvidVerification Verify(X509Certificate? certificate, X509Chain? chain, TrustBundle bundle, RevocationList revocations)
    {
        if (certificate is null)
        {
            return SvidVerification.Invalid(SvidFailure.NoCertificate, "no certificate presented");
        }
        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var presented = chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>();
        return SvidVerifier.Verify(leaf, presented, bundle, DateTimeOffset.UtcNow, revocations);
    }
}
