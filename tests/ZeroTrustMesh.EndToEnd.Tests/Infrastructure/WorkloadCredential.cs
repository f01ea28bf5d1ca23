using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>Obtains a real SVID from the real control plane the way a sidecar does: token, key, CSR.</summary>
internal static class WorkloadCredential
{
    public static byte[] Csr(ECDsa key, string? uriSan = null)
    {
        var request = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256);
        if (uriSan is not null)
        {
            request.CertificateExtensions.Add(SubjectAltNames.ForUri(uriSan));
        }
        return request.CreateSigningRequest();
    }

    public static async Task<SignCertificateResponse> SignAsync(ControlPlane controlPlane, byte[] csr, string token)
    {
        using var channel = controlPlane.Channel();
        return await new Proto.V1.Identity.IdentityClient(channel).SignCertificateAsync(new SignCertificateRequest { Csr = ByteString.CopyFrom(csr), JoinToken = token });
    }

    /// <summary>Renewal: <paramref name="clientCertificate"/> (or none) over mTLS and a CSR for the new key.</summary>
    public static async Task<SignCertificateResponse> RenewAsync(ControlPlane controlPlane, X509Certificate2? clientCertificate, byte[] csr)
    {
        using var channel = controlPlane.Channel(clientCertificate);
        return await new Proto.V1.Identity.IdentityClient(channel).RenewCertificateAsync(new RenewCertificateRequest { Csr = ByteString.CopyFrom(csr) });
    }

    /// <summary>A certificate with its private key for <c>spiffe://cluster.local/ns/NS/sa/SA</c>, issued by the control plane.</summary>
    public static async Task<X509Certificate2> Issue(ControlPlane controlPlane, string @namespace, string serviceAccount)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var response = await SignAsync(controlPlane, Csr(key), await controlPlane.MintTokenAsync(@namespace, serviceAccount));
        using var leaf = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].Span);
        return leaf.CopyWithPrivateKey(key);
    }
}
