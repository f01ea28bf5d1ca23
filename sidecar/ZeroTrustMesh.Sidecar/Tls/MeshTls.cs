using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using ZeroTrustMesh.Hosting;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Registry;

namespace ZeroTrustMesh.Sidecar.Tls;

/// <summary>The verified SPIFFE ID of the peer on this connection; set once at the handshake, read by every request.</summary>
internal sealed class PeerIdentityFeature(SpiffeId id)
{
    public SpiffeId Id { get; } = id;
}

/// <summary>
/// mTLS between sidecars. Both sides present the current SVID (read at each handshake, so a renewal takes
/// effect on the next connection and never disturbs an established one) and verify the peer's SVID against
/// the trust bundle and the revocation list the sidecar holds now (a newly followed bundle, or a revoked peer, counts
/// from the next handshake; connections established before are left alone). The peer's certificate must also be
/// usable for its side: clientAuth for a caller, serverAuth for a destination, when it has an extended key usage.
/// With no valid certificate there is no handshake: fail closed. Every refusal is counted and logged (<see cref="RefusalLog"/>).
/// </summary>
internal static class MeshTls
{
    /// <summary>ALPN of an opaque TCP stream inside the mesh's mTLS (the inbound listener relays it to a declared port).</summary>
    public static readonly SslApplicationProtocol TcpProtocol = new("ztm-tcp/1");

    public const SslProtocols Protocols = SslProtocols.Tls13;

    /// <summary>
    /// Server side (inbound): require a client SVID; the verified identity is published on <paramref name="connection"/>
    /// as a <see cref="PeerIdentityFeature"/>, a refusal marked there (<see cref="TlsHandshakeOutcome.MarkRefused"/>).
    /// </summary>
    public static SslServerAuthenticationOptions ServerOptions(IdentityState state, RefusalLog refusals, ConnectionContext connection)
    {
        if (state.Valid is not { } identity)
        {
            refusals.Refused("inbound", connection.RemoteEndPoint, "NoServerCertificate", "this sidecar holds no valid certificate (none issued yet, or it expired)");
            TlsHandshakeOutcome.MarkRefused(connection);
            throw new AuthenticationException("this sidecar holds no valid certificate yet");
        }
        return new SslServerAuthenticationOptions
        {
            ServerCertificateContext = identity.TlsContext,
            EnabledSslProtocols = Protocols,
            ClientCertificateRequired = true,
            ApplicationProtocols = [SslApplicationProtocol.Http2, TcpProtocol],
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            {
                var verified = Verify(certificate, chain, state, SvidPurpose.Client);
                if (!verified.IsValid)
                {
                    refusals.Refused("inbound", connection.RemoteEndPoint, verified);
                    TlsHandshakeOutcome.MarkRefused(connection);
                    return false;
                }
                connection.Features.Set(new PeerIdentityFeature(verified.Id));
                return true;
            },
        };
    }

    /// <summary>Client side (outbound): present our SVID, and accept only a server whose SVID is the destination's identity.</summary>
    /// <remarks>SNI is the destination service's name (a SPIFFE ID is not a host name).</remarks>
    public static SslClientAuthenticationOptions ClientOptions(IdentityState state, RefusalLog refusals, Destination destination, SslApplicationProtocol protocol) => new()
    {
        TargetHost = destination.Service,
        EnabledSslProtocols = Protocols,
        ApplicationProtocols = [protocol],
        LocalCertificateSelectionCallback = (_, _, _, _, _) =>
            state.Valid?.Certificate ?? throw new AuthenticationException("this sidecar holds no valid certificate yet"),
        RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
        {
            var verified = Verify(certificate, chain, state, SvidPurpose.Server);
            if (verified.IsValid && verified.Id != destination.Identity)
            {
                verified = SvidVerification.Invalid(SvidFailure.UnexpectedIdentity, $"server is '{verified.Id}', the destination '{destination.Service}' may only be '{destination.Identity}'");
            }
            if (!verified.IsValid)
            {
                refusals.Refused("outbound", destination.Inbound, verified);
            }
            return verified.IsValid;
        },
    };

    private static SvidVerification Verify(X509Certificate? certificate, X509Chain? chain, IdentityState state, SvidPurpose purpose)
    {
        if (certificate is null)
        {
            return SvidVerification.Invalid(SvidFailure.NoCertificate, "no certificate presented");
        }
        if (state.Bundle is not { } bundle)
        {
            return SvidVerification.Invalid(SvidFailure.UntrustedChain, "this sidecar has no trust bundle yet");
        }
        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var presented = chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>();
        return SvidVerifier.Verify(leaf, presented, bundle, DateTimeOffset.UtcNow, state.Revocations, purpose);
    }
}
