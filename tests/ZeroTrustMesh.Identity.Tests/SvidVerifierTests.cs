using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Identity.Tests;

/// <summary>Leaf rules and chain checks, on certificates minted here by a throwaway CA.</summary>
public sealed class SvidVerifierTests : IDisposable
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly TrustBundle _bundle;

    public SvidVerifierTests()
    {
        _ca = MakeCa(_caKey, "CN=test CA");
        _bundle = new TrustBundle("cluster.local", [_ca], 1);
    }

    public void Dispose()
    {
        _caKey.Dispose();
        _ca.Dispose();
    }

    [Fact]
    public void A_conforming_leaf_verifies_to_its_spiffe_id()
    {
        using var leaf = Leaf(_ca, _caKey, ["spiffe://cluster.local/ns/shop/sa/orders"]);
        var result = SvidVerifier.Verify(leaf, null, _bundle, Now);
        Assert.True(result.IsValid, result.Reason);
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/orders", result.Id.Value);
    }

    [Fact]
    public void No_certificate() => Assert.Equal(SvidFailure.NoCertificate, SvidVerifier.Verify(null, null, _bundle, Now).Failure);

    [Fact]
    public void Expired_and_not_yet_valid()
    {
        using var leaf = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"]);
        Assert.Equal(SvidFailure.Expired, SvidVerifier.Verify(leaf, null, _bundle, Now.AddHours(2)).Failure);
        Assert.Equal(SvidFailure.NotYetValid, SvidVerifier.Verify(leaf, null, _bundle, Now.AddHours(-2)).Failure);
    }

    [Fact]
    public void A_leaf_from_another_ca_is_untrusted()
    {
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = MakeCa(otherKey, "CN=test CA"); // same name, other key
        using var leaf = Leaf(other, otherKey, ["spiffe://cluster.local/a"]);
        var result = SvidVerifier.Verify(leaf, null, _bundle, Now);
        Assert.Equal(SvidFailure.UntrustedChain, result.Failure);
    }

    [Fact]
    public void Another_trust_domain_is_refused()
    {
        using var leaf = Leaf(_ca, _caKey, ["spiffe://evil.example/ns/shop/sa/orders"]);
        Assert.Equal(SvidFailure.WrongTrustDomain, SvidVerifier.Verify(leaf, null, _bundle, Now).Failure);
    }

    [Fact]
    public void A_ca_certificate_is_not_a_leaf()
    {
        using var leaf = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"], isCa: true);
        Assert.Equal(SvidFailure.NotALeaf, SvidVerifier.Verify(leaf, null, _bundle, Now).Failure);
    }

    [Fact]
    public void Two_uri_sans_or_none_are_refused()
    {
        using var two = Leaf(_ca, _caKey, ["spiffe://cluster.local/a", "spiffe://cluster.local/b"]);
        Assert.Equal(SvidFailure.BadSubjectAltName, SvidVerifier.Verify(two, null, _bundle, Now).Failure);
        using var none = Leaf(_ca, _caKey, []);
        Assert.Equal(SvidFailure.BadSubjectAltName, SvidVerifier.Verify(none, null, _bundle, Now).Failure);
        using var notSpiffe = Leaf(_ca, _caKey, ["https://cluster.local/a"]);
        Assert.Equal(SvidFailure.InvalidSpiffeId, SvidVerifier.Verify(notSpiffe, null, _bundle, Now).Failure);
    }

    [Fact]
    public void Key_usage_must_be_digital_signature_without_cert_signing()
    {
        using var signer = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"], usage: X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign);
        Assert.Equal(SvidFailure.BadKeyUsage, SvidVerifier.Verify(signer, null, _bundle, Now).Failure);
        using var noSignature = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"], usage: X509KeyUsageFlags.KeyEncipherment);
        Assert.Equal(SvidFailure.BadKeyUsage, SvidVerifier.Verify(noSignature, null, _bundle, Now).Failure);
    }

    [Fact]
    public void Any_root_of_the_bundle_is_accepted_during_a_ca_rotation()
    {
        using var newKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var newCa = MakeCa(newKey, "CN=new CA");
        var rotating = new TrustBundle("cluster.local", [_ca, newCa], 2);
        using var oldLeaf = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"]);
        using var newLeaf = Leaf(newCa, newKey, ["spiffe://cluster.local/a"]);
        Assert.True(SvidVerifier.Verify(oldLeaf, null, rotating, Now).IsValid);
        Assert.True(SvidVerifier.Verify(newLeaf, null, rotating, Now).IsValid);
    }

    [Fact]
    public void An_unknown_critical_extension_is_refused_as_x509_path_validation_would()
    {
        using var leaf = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"], extra: new X509Extension("1.3.6.1.4.1.99999.1", [0x05, 0x00], critical: true));
        Assert.Equal(SvidFailure.UntrustedChain, SvidVerifier.Verify(leaf, null, _bundle, Now).Failure);
    }

    [Fact]
    public void A_tampered_leaf_does_not_verify()
    {
        using var leaf = Leaf(_ca, _caKey, ["spiffe://cluster.local/a"]);
        var der = leaf.RawData;
        der[^5] ^= 0xFF; // inside the signature
        using var tampered = X509CertificateLoader.LoadCertificate(der);
        Assert.Equal(SvidFailure.UntrustedChain, SvidVerifier.Verify(tampered, null, _bundle, Now).Failure);
    }

    internal static X509Certificate2 MakeCa(ECDsa key, string subject)
    {
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(Now.AddDays(-1), Now.AddDays(1));
    }

    internal static X509Certificate2 Leaf(X509Certificate2 ca, ECDsa caKey, string[] uris, bool isCa = false, X509KeyUsageFlags usage = X509KeyUsageFlags.DigitalSignature, X509Extension? extra = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, true));
        if (uris.Length > 0)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (var uri in uris)
            {
                san.AddUri(new Uri(uri));
            }
            request.CertificateExtensions.Add(san.Build());
        }
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        if (extra is not null)
        {
            request.CertificateExtensions.Add(extra);
        }
        return request.Create(ca.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), Now.AddMinutes(-5), Now.AddHours(1), RandomNumberGenerator.GetBytes(16));
    }
}
