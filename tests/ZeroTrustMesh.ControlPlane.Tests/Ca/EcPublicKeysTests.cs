using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.ControlPlane.Ca;

namespace ZeroTrustMesh.ControlPlane.Tests.Ca;

/// <summary>The CSR key import: OpenSSL 3's own on Linux, .NET's elsewhere; the same keys, the same refusals.</summary>
public sealed class EcPublicKeysTests
{
    [Fact]
    public void On_linux_with_openssl_3_the_direct_import_is_the_one_in_use()
    {
        if (OperatingSystem.IsLinux() && SafeEvpPKeyHandle.OpenSslVersion >= 0x3000_0000)
        {
            Assert.True(EcPublicKeys.UsesOpenSsl3); // otherwise every test here would only exercise the fallback
        }
    }

    [Theory]
    [InlineData("nistP256")]
    [InlineData("nistP384")]
    [InlineData("nistP521")] // not imported directly: .NET's import
    public void The_imported_key_is_the_key_and_verifies_its_signatures(string curve)
    {
        using var key = ECDsa.Create(ECCurve.CreateFromFriendlyName(curve));
        var data = "certificationRequestInfo"u8.ToArray();
        var signature = key.SignData(data, HashAlgorithmName.SHA256);
        using var other = ECDsa.Create(ECCurve.CreateFromFriendlyName(curve));

        using var imported = EcPublicKeys.Import(PublicKeyOf(key));

        Assert.Equal(key.ExportSubjectPublicKeyInfo(), imported.ExportSubjectPublicKeyInfo());
        Assert.True(imported.VerifyData(data, signature, HashAlgorithmName.SHA256));
        Assert.False(imported.VerifyData(data, other.SignData(data, HashAlgorithmName.SHA256), HashAlgorithmName.SHA256));
    }

    [Theory]
    [InlineData("nistP256")]
    [InlineData("nistP384")]
    public void A_point_that_is_not_on_the_curve_is_refused_as_dotnet_refuses_it(string curve)
    {
        using var key = ECDsa.Create(ECCurve.CreateFromFriendlyName(curve));
        var good = PublicKeyOf(key);
        var point = good.EncodedKeyValue.RawData.ToArray();
        point[^1] ^= 0x01;
        var bad = new PublicKey(good.Oid, good.EncodedParameters, new AsnEncodedData(point));

        Assert.ThrowsAny<CryptographicException>(() => EcPublicKeys.Import(bad));
        Assert.ThrowsAny<CryptographicException>(() => bad.GetECDsaPublicKey());
        using var stillGood = EcPublicKeys.Import(good); // a refusal leaves nothing behind that breaks the next import
    }

    [Fact]
    public void Many_imports_on_many_threads_agree()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var data = "x"u8.ToArray();
        var signature = key.SignData(data, HashAlgorithmName.SHA256);
        var publicKey = PublicKeyOf(key);

        Parallel.For(0, 200, _ =>
        {
            using var imported = EcPublicKeys.Import(publicKey);
            Assert.True(imported.VerifyData(data, signature, HashAlgorithmName.SHA256));
        });
    }

    private static PublicKey PublicKeyOf(ECDsa key) => PublicKey.CreateFromSubjectPublicKeyInfo(key.ExportSubjectPublicKeyInfo(), out _);
}
