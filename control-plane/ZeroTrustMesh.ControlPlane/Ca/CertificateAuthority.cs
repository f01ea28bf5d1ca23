using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>A certificate as issued: its DER, and what logs and responses need without parsing it again.</summary>
internal sealed record SignedCertificate(byte[] Der, string Serial, DateTimeOffset NotBefore, DateTimeOffset NotAfter);

/// <summary>
/// Signs X.509-SVIDs with the mesh CA's key. Every leaf follows the SPIFFE X.509-SVID specification:
/// one URI SAN, cA=false, critical key usage digitalSignature (plus keyEncipherment for RSA keys only),
/// EKU serverAuth + clientAuth, a random positive serial, notBefore backdated for clock skew.
/// Thread-safe: the CA key is only used to sign.
/// </summary>
internal sealed class CertificateAuthority
{
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
        var now = Time.GetUtcNow();
        // Backdated so that a peer whose clock runs a little behind accepts the certificate; revocation by SPIFFE ID
        // counts "issued at" from the same constant.
        var notBefore = TruncateToSeconds(now - Revocation.IssuanceBackdate);
        var notAfter = TruncateToSeconds(now + lifetime);
        var caNotAfter = SigningCertificate.NotAfter.ToUniversalTime();
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
            _authorityKeyId,
        ];
        var serial = NewSerial();
        return new SignedCertificate(Encode(serial, notBefore, notAfter, LeafSubject, publicKey, extensions), Convert.ToHexStringLower(serial), notBefore, notAfter);
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
        var now = Time.GetUtcNow();
        var notBefore = TruncateToSeconds(now - Revocation.IssuanceBackdate);
        var notAfter = TruncateToSeconds(now + lifetime);
        var caNotAfter = SigningCertificate.NotAfter.ToUniversalTime();
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
            _authorityKeyId,
        ];
        return X509CertificateLoader.LoadCertificate(Encode(NewSerial(), notBefore, notAfter, subject, publicKey, extensions));
    }

    /// <summary>An X.509 v3 certificate (RFC 5280 §4.1) signed by the CA's key.</summary>
    private byte[] Encode(byte[] serial, DateTimeOffset notBefore, DateTimeOffset notAfter, X500DistinguishedName subject, PublicKey publicKey, X509Extension[] extensions)
    {
        var algorithm = _signer.GetSignatureAlgorithmIdentifier(HashAlgorithmName.SHA256);
        var tbs = new AsnWriter(AsnEncodingRules.DER);
        using (tbs.PushSequence())
        {
            using (tbs.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0)))
            {
                tbs.WriteInteger(2); // v3
            }
            tbs.WriteInteger(serial);
            tbs.WriteEncodedValue(algorithm);
            tbs.WriteEncodedValue(SigningCertificate.SubjectName.RawData);
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
            certificate.WriteBitString(_signer.SignData(tbsBytes, HashAlgorithmName.SHA256));
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
