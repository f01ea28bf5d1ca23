using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>A certificate as issued: its DER, and what logs and responses need without parsing it again.</summary>
/// <param name="SignerKeyId">The key identifier of the CA certificate that signed it (<see cref="KeyIds"/>): which root, during a rotation.</param>
internal sealed record SignedCertificate(byte[] Der, string Serial, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string SignerKeyId = "");

/// <summary>Key identifiers as lowercase hex: how a leaf names the CA certificate that signed it, and how that certificate names itself.</summary>
internal static class KeyIds
{
    /// <summary>The certificate's own key identifier (subjectKeyIdentifier), or its SHA-1 key hash when it has none.</summary>
    public static string Subject(X509Certificate2 certificate) =>
        certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>().FirstOrDefault() is { SubjectKeyIdentifier: { } id }
            ? id.ToLowerInvariant()
            : Convert.ToHexStringLower(new X509SubjectKeyIdentifierExtension(certificate.PublicKey, false).SubjectKeyIdentifierBytes.Span);

    /// <summary>The key identifier of the certificate's issuer (authorityKeyIdentifier), or "" when it names none.</summary>
    public static string Authority(X509Certificate2 certificate) =>
        certificate.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().FirstOrDefault() is { KeyIdentifier: { } id }
            ? Convert.ToHexStringLower(id.Span)
            : "";
}

/// <summary>
/// Signs X.509-SVIDs with the mesh CA's key. Every leaf follows the SPIFFE X.509-SVID specification:
/// one URI SAN, cA=false, critical key usage digitalSignature (plus keyEncipherment for RSA keys only),
/// EKU serverAuth + clientAuth, a random positive serial, notBefore backdated for clock skew.
/// Thread-safe: the CA key is only used to sign; a CA rotation swaps the signer and the bundle (<see cref="Use"/>), and
/// each leaf is signed by one signer, read once.
/// </summary>
internal sealed class CertificateAuthority
{
    private static readonly X500DistinguishedName LeafSubject = new("O=ZeroTrustMesh");
    private static readonly OidCollection ServerAndClientAuth = [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")];

    private volatile Signer _signer;
    private volatile TrustBundle _bundle;

    /// <param name="signingCertificate">The CA certificate, with its private key.</param>
    /// <param name="intermediates">Certificates between the signing certificate and a root (plug-in CA), else empty.</param>
    public CertificateAuthority(X509Certificate2 signingCertificate, IReadOnlyList<X509Certificate2> intermediates, TrustBundle bundle, TimeProvider time)
    {
        _signer = new Signer(signingCertificate);
        _bundle = bundle;
        Intermediates = intermediates;
        Time = time;
    }

    /// <summary>The certificate that signs new leaves; a CA rotation replaces it (<see cref="Use"/>).</summary>
    public X509Certificate2 SigningCertificate => _signer.Certificate;

    public IReadOnlyList<X509Certificate2> Intermediates { get; }

    /// <summary>The roots leaves are verified against; more than one while the CA is rotated.</summary>
    public TrustBundle Bundle => _bundle;

    public TimeProvider Time { get; }

    public string TrustDomain => Bundle.TrustDomain;

    /// <summary>Raised after <see cref="Use"/> changed the signer or the bundle; handlers must be quick.</summary>
    public event Action? Changed;

    /// <summary>
    /// The chain a workload presents after its leaf: the signing certificate unless it is itself a root
    /// of the bundle, then the intermediates.
    /// </summary>
    public IEnumerable<X509Certificate2> ChainAfterLeaf
    {
        get
        {
            var signing = SigningCertificate;
            return (Bundle.Roots.Any(r => r.Thumbprint == signing.Thumbprint) ? [] : new[] { signing }).Concat(Intermediates);
        }
    }

    /// <summary>
    /// CA rotation: from now on leaves are signed by <paramref name="signingCertificate"/> (a root of
    /// <paramref name="bundle"/>, with its key) and verified against <paramref name="bundle"/>. The bundle is swapped
    /// before the signer, so a leaf of the new signer is never checked against a bundle without its root.
    /// </summary>
    public void Use(X509Certificate2 signingCertificate, TrustBundle bundle)
    {
        _bundle = bundle;
        if (!ReferenceEquals(_signer.Certificate, signingCertificate) && _signer.Certificate.Thumbprint != signingCertificate.Thumbprint)
        {
            _signer = new Signer(signingCertificate);
        }
        Changed?.Invoke();
    }

    /// <summary>The signing certificate's key as a signature generator, and its key identifier; swapped as one.</summary>
    private sealed class Signer
    {
        public Signer(X509Certificate2 certificate)
        {
            Certificate = certificate;
            Generator = certificate.GetECDsaPrivateKey() is { } ecdsa
                ? X509SignatureGenerator.CreateForECDsa(ecdsa)
                : X509SignatureGenerator.CreateForRSA(
                    certificate.GetRSAPrivateKey() ?? throw new InvalidOperationException("The CA certificate has no private key."),
                    RSASignaturePadding.Pkcs1);
            AuthorityKeyId = X509AuthorityKeyIdentifierExtension.CreateFromCertificate(certificate, true, false);
            KeyId = KeyIds.Subject(certificate);
        }

        public string KeyId { get; }

        public X509Certificate2 Certificate { get; }

        public X509SignatureGenerator Generator { get; }

        public X509Extension AuthorityKeyId { get; }
    }

    /// <summary>Signs a leaf SVID for <paramref name="id"/> over <paramref name="publicKey"/>, as a certificate object.</summary>
    /// <param name="dnsNames">Extra DNS/IP SANs for the control plane's serving certificate only; workloads get none.</param>
    public X509Certificate2 IssueSvid(SpiffeId id, PublicKey publicKey, TimeSpan lifetime, IEnumerable<string>? dnsNames = null) =>
        X509CertificateLoader.LoadCertificate(SignSvid(id, publicKey, lifetime, dnsNames).Der);

    /// <summary>
    /// Signs a leaf SVID and returns its DER. The certificate is encoded here rather than with
    /// <see cref="CertificateRequest.Create(X500DistinguishedName, X509SignatureGenerator, DateTimeOffset, DateTimeOffset, ReadOnlySpan{byte})"/>,
    /// which parses the certificate it has just built: that parse cost more than the signature itself on the
    /// issuance path, and the workload only needs the bytes.
    /// </summary>
    public SignedCertificate SignSvid(SpiffeId id, PublicKey publicKey, TimeSpan lifetime, IEnumerable<string>? dnsNames = null)
    {
        var signer = _signer; // one signer for the whole leaf, whatever a rotation does meanwhile
        var now = Time.GetUtcNow();
        // Backdated so that a peer whose clock runs a little behind accepts the certificate; revocation by SPIFFE ID
        // counts "issued at" from the same constant.
        var notBefore = TruncateToSeconds(now - Revocation.IssuanceBackdate);
        var notAfter = TruncateToSeconds(now + lifetime);
        var caNotAfter = signer.Certificate.NotAfter.ToUniversalTime();
        if (notAfter > caNotAfter)
        {
            notAfter = caNotAfter; // never outlive the issuer
        }

        var usage = X509KeyUsageFlags.DigitalSignature;
        if (publicKey.Oid.Value == "1.2.840.113549.1.1.1")
        {
            usage |= X509KeyUsageFlags.KeyEncipherment; // RSA key transport; never for EC keys
        }
        X509Extension[] extensions =
        [
            new X509BasicConstraintsExtension(false, false, 0, true),
            new X509KeyUsageExtension(usage, critical: true),
            new X509EnhancedKeyUsageExtension(ServerAndClientAuth, false),
            dnsNames is null ? SubjectAltNames.ForUri(id.Value) : ServingAltNames(id, dnsNames),
            new X509SubjectKeyIdentifierExtension(publicKey, false),
            signer.AuthorityKeyId,
        ];
        var serial = NewSerial();
        return new SignedCertificate(Encode(signer, serial, notBefore, notAfter, LeafSubject, publicKey, extensions), Convert.ToHexStringLower(serial), notBefore, notAfter, signer.KeyId);
    }

    /// <summary>
    /// Signs a TLS server certificate for DNS names (the injection webhook's, which the Kubernetes API server calls by its
    /// Service name): no SPIFFE ID, so no workload can present it as an identity; EKU serverAuth only; the subject's CN is
    /// the first name. Not an SVID: SVIDs go through <see cref="SignSvid"/>.
    /// </summary>
    public X509Certificate2 IssueServerCertificate(IReadOnlyList<string> dnsNames, PublicKey publicKey, TimeSpan lifetime)
    {
        if (dnsNames.Count == 0)
        {
            throw new ArgumentException("A server certificate needs at least one DNS name.", nameof(dnsNames));
        }
        var signer = _signer;
        var now = Time.GetUtcNow();
        var notBefore = TruncateToSeconds(now - Revocation.IssuanceBackdate);
        var notAfter = TruncateToSeconds(now + lifetime);
        var caNotAfter = signer.Certificate.NotAfter.ToUniversalTime();
        if (notAfter > caNotAfter)
        {
            notAfter = caNotAfter;
        }
        var names = new SubjectAlternativeNameBuilder();
        foreach (var name in dnsNames)
        {
            names.AddDnsName(name);
        }
        var subject = new X500DistinguishedName($"O=ZeroTrustMesh, CN={dnsNames[0]}");
        X509Extension[] extensions =
        [
            new X509BasicConstraintsExtension(false, false, 0, true),
            new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true),
            new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false),
            names.Build(),
            new X509SubjectKeyIdentifierExtension(publicKey, false),
            signer.AuthorityKeyId,
        ];
        return X509CertificateLoader.LoadCertificate(Encode(signer, NewSerial(), notBefore, notAfter, subject, publicKey, extensions));
    }

    /// <summary>An X.509 v3 certificate (RFC 5280 §4.1) signed by the CA's key.</summary>
    private static byte[] Encode(Signer signer, byte[] serial, DateTimeOffset notBefore, DateTimeOffset notAfter, X500DistinguishedName subject, PublicKey publicKey, X509Extension[] extensions)
    {
        var algorithm = signer.Generator.GetSignatureAlgorithmIdentifier(HashAlgorithmName.SHA256);
        var tbs = new AsnWriter(AsnEncodingRules.DER);
        using (tbs.PushSequence())
        {
            using (tbs.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0)))
            {
                tbs.WriteInteger(2); // v3
            }
            tbs.WriteInteger(serial);
            tbs.WriteEncodedValue(algorithm);
            tbs.WriteEncodedValue(signer.Certificate.SubjectName.RawData);
            using (tbs.PushSequence())
            {
                WriteTime(tbs, notBefore);
                WriteTime(tbs, notAfter);
            }
            tbs.WriteEncodedValue(subject.RawData);
            tbs.WriteEncodedValue(publicKey.ExportSubjectPublicKeyInfo());
            using (tbs.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 3)))
            using (tbs.PushSequence())
            {
                foreach (var extension in extensions)
                {
                    using (tbs.PushSequence())
                    {
                        tbs.WriteObjectIdentifier(extension.Oid!.Value!);
                        if (extension.Critical)
                        {
                            tbs.WriteBoolean(true); // DER omits the default FALSE
                        }
                        tbs.WriteOctetString(extension.RawData);
                    }
                }
            }
        }
        var tbsBytes = tbs.Encode();
        var certificate = new AsnWriter(AsnEncodingRules.DER);
        using (certificate.PushSequence())
        {
            certificate.WriteEncodedValue(tbsBytes);
            certificate.WriteEncodedValue(algorithm);
            certificate.WriteBitString(signer.Generator.SignData(tbsBytes, HashAlgorithmName.SHA256));
        }
        return certificate.Encode();
    }

    /// <summary>RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.</summary>
    private static void WriteTime(AsnWriter writer, DateTimeOffset time)
    {
        if (time.Year < 2050)
        {
            writer.WriteUtcTime(time);
        }
        else
        {
            writer.WriteGeneralizedTime(time, omitFractionalSeconds: true);
        }
    }

    private static DateTimeOffset TruncateToSeconds(DateTimeOffset time) => new(time.Ticks - (time.Ticks % TimeSpan.TicksPerSecond), TimeSpan.Zero);

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
