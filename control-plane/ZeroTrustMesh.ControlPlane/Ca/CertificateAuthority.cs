using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// Signs X.509-SVIDs with the mesh CA's key. Every leaf follows the SPIFFE X.509-SVID specification:
/// one URI SAN, cA=false, critical key usage digitalSignature (plus keyEncipherment for RSA keys only),
/// EKU serverAuth + clientAuth, a random positive serial, notBefore backdated for clock skew.
/// Thread-safe: the CA key is only used to sign.
/// </summary>
internal sealed class CertificateAuthority
{
    /// <summary>How far notBefore is backdated so a peer whose clock runs a little behind accepts the certificate.</summary>
    public static readonly TimeSpan Backdate = TimeSpan.FromSeconds(10);

    private static readonly X500DistinguishedName LeafSubject = new("O=ZeroTrustMesh");
    private static readonly OidCollection ServerAndClientAuth = [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")];

    private readonly X509SignatureGenerator _signer;
    private readonly X509Extension _authorityKeyId;

    /// <param name="signingCertificate">The CA certificate, with its private key.</param>
    /// <param name="intermediates">Certificates between the signing certificate and a root (plug-in CA), else empty.</param>
    public CertificateAuthority(X509Certificate2 signingCertificate, IReadOnlyList<X509Certificate2> intermediates, TrustBundle bundle, TimeProvider time)
    {
        SigningCertificate = signingCertificate;
        Intermediates = intermediates;
        Bundle = bundle;
        Time = time;
        _signer = signingCertificate.GetECDsaPrivateKey() is { } ecdsa
            ? X509SignatureGenerator.CreateForECDsa(ecdsa)
            : X509SignatureGenerator.CreateForRSA(
                signingCertificate.GetRSAPrivateKey() ?? throw new InvalidOperationException("The CA certificate has no private key."),
                RSASignaturePadding.Pkcs1);
        _authorityKeyId = X509AuthorityKeyIdentifierExtension.CreateFromCertificate(signingCertificate, true, false);
    }

    public X509Certificate2 SigningCertificate { get; }

    public IReadOnlyList<X509Certificate2> Intermediates { get; }

    public TrustBundle Bundle { get; }

    public TimeProvider Time { get; }

    public string TrustDomain => Bundle.TrustDomain;

    /// <summary>
    /// The chain a workload presents after its leaf: the signing certificate unless it is itself a root
    /// of the bundle, then the intermediates.
    /// </summary>
    public IEnumerable<X509Certificate2> ChainAfterLeaf =>
        (Bundle.Roots.Any(r => r.Thumbprint == SigningCertificate.Thumbprint) ? [] : new[] { SigningCertificate }).Concat(Intermediates);

    /// <summary>Signs a leaf SVID for <paramref name="id"/> over <paramref name="publicKey"/>.</summary>
    /// <param name="dnsNames">Extra DNS/IP SANs for the control plane's serving certificate only; workloads get none.</param>
    public X509Certificate2 IssueSvid(SpiffeId id, PublicKey publicKey, TimeSpan lifetime, IEnumerable<string>? dnsNames = null)
    {
        var now = Time.GetUtcNow();
        var notBefore = now - Backdate;
        var notAfter = now + lifetime;
        var caNotAfter = SigningCertificate.NotAfter.ToUniversalTime();
        if (notAfter > caNotAfter)
        {
            notAfter = caNotAfter; // never outlive the issuer
        }

        var request = new CertificateRequest(LeafSubject, publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        var usage = X509KeyUsageFlags.DigitalSignature;
        if (publicKey.Oid.Value == "1.2.840.113549.1.1.1")
        {
            usage |= X509KeyUsageFlags.KeyEncipherment; // RSA key transport; never for EC keys
        }
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(ServerAndClientAuth, false));
        request.CertificateExtensions.Add(dnsNames is null ? SubjectAltNames.ForUri(id.Value) : ServingAltNames(id, dnsNames));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(publicKey, false));
        request.CertificateExtensions.Add(_authorityKeyId);
        return request.Create(SigningCertificate.SubjectName, _signer, notBefore, notAfter, NewSerial());
    }

    private static X509Extension ServingAltNames(SpiffeId id, IEnumerable<string> hosts)
    {
        var builder = new SubjectAlternativeNameBuilder();
        builder.AddUri(new Uri(id.Value));
        foreach (var host in hosts)
        {
            if (System.Net.IPAddress.TryParse(host, out var ip))
            {
                builder.AddIpAddress(ip);
            }
            else
            {
                builder.AddDnsName(host);
            }
        }
        return builder.Build();
    }

    /// <summary>16 random bytes, positive and without a leading zero byte (RFC 5280 §4.1.2.2 allows up to 20).</summary>
    private static byte[] NewSerial()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01);
        return serial;
    }
}
