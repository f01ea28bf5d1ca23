using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>
/// The fast path of SVID verification: a leaf signed directly by a root of the bundle (the mesh CA's own leaves) is
/// checked with one signature verification against the root's cached public key, instead of an
/// <see cref="X509Chain"/> build, which costs several times more and runs on every handshake and renewal. Anything
/// else (intermediates, other algorithms, unknown critical extensions) goes to the full chain build.
/// </summary>
internal sealed class IssuerSignature
{
    /// <summary>Critical extensions a leaf may carry on the fast path; X509Chain refuses any critical extension it does not know.</summary>
    private static readonly HashSet<string> KnownCritical = ["2.5.29.15", "2.5.29.19", "2.5.29.17", "2.5.29.37"];

    private readonly X509Certificate2 _root;
    private readonly ThreadLocal<AsymmetricAlgorithm?> _key; // key objects are not documented thread-safe: one per thread

    public IssuerSignature(X509Certificate2 root)
    {
        _root = root;
        _key = new ThreadLocal<AsymmetricAlgorithm?>(() => (AsymmetricAlgorithm?)root.GetECDsaPublicKey() ?? root.GetRSAPublicKey());
    }

    /// <summary>True: signed by this root. False: this root's name but not its signature. Null: not decidable here.</summary>
    public bool? Verify(X509Certificate2 leaf, DateTimeOffset now)
    {
        if (!leaf.IssuerName.RawData.AsSpan().SequenceEqual(_root.SubjectName.RawData)
            || now < _root.NotBefore.ToUniversalTime() || now > _root.NotAfter.ToUniversalTime())
        {
            return null;
        }
        foreach (var extension in leaf.Extensions)
        {
            if (extension.Critical && !KnownCritical.Contains(extension.Oid?.Value ?? ""))
            {
                return null;
            }
        }
        try
        {
            var reader = new AsnReader(leaf.RawDataMemory, AsnEncodingRules.DER);
            var certificate = reader.ReadSequence();
            var tbs = certificate.ReadEncodedValue();
            var algorithm = certificate.ReadSequence().ReadObjectIdentifier();
            var signature = certificate.ReadBitString(out var unusedBits);
            if (unusedBits != 0)
            {
                return false;
            }
            return (algorithm, _key.Value) switch
            {
                ("1.2.840.10045.4.3.2", ECDsa ec) => ec.VerifyData(tbs.Span, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence),
                ("1.2.840.10045.4.3.3", ECDsa ec) => ec.VerifyData(tbs.Span, signature, HashAlgorithmName.SHA384, DSASignatureFormat.Rfc3279DerSequence),
                ("1.2.840.113549.1.1.11", RSA rsa) => rsa.VerifyData(tbs.Span, signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
                ("1.2.840.113549.1.1.12", RSA rsa) => rsa.VerifyData(tbs.Span, signature, HashAlgorithmName.SHA384, RSASignaturePadding.Pkcs1),
                _ => null,
            };
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException)
        {
            return false;
        }
    }
}
