using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>The CSR checks, in particular proof of possession on both signature paths (ECDSA here, anything else by .NET).</summary>
public sealed class CsrValidatorTests
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";

    [Fact]
    public void A_p256_csr_as_the_sidecar_sends_it_is_accepted()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var csr = CsrValidator.Validate(Csr(key, HashAlgorithmName.SHA256));

        Assert.Equal("ECDSA P-256", csr.KeyDescription);
        Assert.Equal(SpiffeId.Parse(Orders), csr.RequestedId);
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), csr.PublicKey.ExportSubjectPublicKeyInfo());
    }

    [Theory]
    [InlineData("SHA256")]
    [InlineData("SHA384")]
    [InlineData("SHA512")]
    public void A_p384_csr_is_accepted_with_each_ecdsa_hash(string hash)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP384);

        Assert.Equal("ECDSA P-384", CsrValidator.Validate(Csr(key, new HashAlgorithmName(hash))).KeyDescription);
    }

    [Fact]
    public void An_rsa_csr_is_checked_by_dotnet_and_accepted()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);

        Assert.Equal("RSA 2048", CsrValidator.Validate(request.CreateSigningRequest()).KeyDescription);

        var tampered = request.CreateSigningRequest();
        tampered[^1] ^= 0x01;
        AssertRefused(tampered, "the CSR's signature does not verify with the key it carries");
    }

    [Fact]
    public void A_csr_whose_signature_was_altered_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = Csr(key, HashAlgorithmName.SHA256);
        csr[^1] ^= 0x01; // the low byte of the signature's s: still valid DER

        AssertRefused(csr, "the CSR's signature does not verify with the key it carries");
    }

    [Fact]
    public void A_csr_signed_by_another_key_than_the_one_it_carries_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var info = Parts(Csr(key, HashAlgorithmName.SHA256)).Info;

        AssertRefused(Assemble(info, "1.2.840.10045.4.3.2", other.SignData(info, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence)),
            "the CSR's signature does not verify with the key it carries");
    }

    [Fact]
    public void A_csr_whose_key_is_not_a_point_on_the_curve_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = Csr(key, HashAlgorithmName.SHA256);
        var point = csr.AsSpan().IndexOf(PointOf(key));
        csr[point + 64] ^= 0x01; // the last byte of y
        var info = Parts(csr).Info;

        // Even a signature made over the altered request cannot make it acceptable.
        AssertRefused(Assemble(info, "1.2.840.10045.4.3.2", key.SignData(info, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence)),
            "the CSR's signature does not verify with the key it carries");
    }

    [Fact]
    public void A_signature_algorithm_that_does_not_fit_the_key_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (info, _, signature) = Parts(Csr(key, HashAlgorithmName.SHA256));

        // sha256WithRSAEncryption over an EC key: not the ECDSA path, and .NET refuses it.
        Assert.Throws<IssuanceRefusedException>(() => CsrValidator.Validate(Assemble(info, "1.2.840.113549.1.1.11", signature)));
    }

    private static void AssertRefused(byte[] csr, string reason)
    {
        var refused = Assert.Throws<IssuanceRefusedException>(() => CsrValidator.Validate(csr));
        Assert.Equal(RefusalKind.InvalidRequest, refused.Kind);
        Assert.StartsWith(reason, refused.Message, StringComparison.Ordinal);
    }

    private static byte[] Csr(ECDsa key, HashAlgorithmName hash)
    {
        var request = new CertificateRequest("O=ZeroTrustMesh", key, hash);
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(Orders));
        return request.CreateSigningRequest();
    }

    private static byte[] PointOf(ECDsa key)
    {
        var q = key.ExportParameters(false).Q;
        return [0x04, .. q.X!, .. q.Y!];
    }

    private static (byte[] Info, string Algorithm, byte[] Signature) Parts(byte[] csr)
    {
        var request = new AsnReader(csr, AsnEncodingRules.DER).ReadSequence();
        var info = request.ReadEncodedValue().ToArray();
        var algorithm = request.ReadSequence().ReadObjectIdentifier();
        return (info, algorithm, request.ReadBitString(out _));
    }

    private static byte[] Assemble(byte[] info, string algorithm, byte[] signature)
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteEncodedValue(info);
            using (writer.PushSequence())
            {
                writer.WriteObjectIdentifier(algorithm);
            }
            writer.WriteBitString(signature);
        }
        return writer.Encode();
    }
}
