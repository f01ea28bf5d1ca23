using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>
/// The CSR's self-signature (proof of possession of the key it asks to certify). An ECDSA signature by an EC key,
/// the sidecar's case, is checked here with the key imported by <see cref="EcPublicKeys"/>; any other combination
/// (RSA, RSA-PSS, algorithm parameters present) by <see cref="CertificateRequest.LoadSigningRequest(ReadOnlySpan{byte}, HashAlgorithmName, out int, CertificateRequestLoadOptions, RSASignaturePadding?)"/>.
/// </summary>
internal static class CsrSignature
{
    private const string EcPublicKey = "1.2.840.10045.2.1";

    /// <param name="der">A CSR that has already parsed (PKCS#10, no trailing data).</param>
    /// <exception cref="CryptographicException">The signature does not verify, or the key cannot verify anything.</exception>
    public static void Verify(ReadOnlySpan<byte> der, PublicKey key)
    {
        if (key.Oid.Value == EcPublicKey && TryReadEcdsa(der, out var info, out var signature, out var hash))
        {
            using var ecdsa = EcPublicKeys.Import(key);
            if (!ecdsa.VerifyData(info, signature, hash, DSASignatureFormat.Rfc3279DerSequence))
            {
                throw new CryptographicException("the ECDSA signature is not valid for this key");
            }
            return;
        }
        CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, out _, CertificateRequestLoadOptions.Default, RSASignaturePadding.Pkcs1);
    }

    /// <summary>
    /// CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING } (RFC 2986 §4.2)
    /// with ecdsa-with-SHA256/384/512 and no parameters (RFC 5758 §3.2); false for anything else.
    /// </summary>
    private static bool TryReadEcdsa(ReadOnlySpan<byte> der, out ReadOnlySpan<byte> info, out ReadOnlySpan<byte> signature, out HashAlgorithmName hash)
    {
        info = signature = default;
        hash = default;
        try
        {
            AsnDecoder.ReadSequence(der, AsnEncodingRules.DER, out var offset, out var length, out _);
            var request = der.Slice(offset, length);
            AsnDecoder.ReadEncodedValue(request, AsnEncodingRules.DER, out _, out _, out var infoLength);
            info = request[..infoLength];
            var rest = request[infoLength..];

            AsnDecoder.ReadSequence(rest, AsnEncodingRules.DER, out offset, out length, out var algorithmLength);
            var algorithm = rest.Slice(offset, length);
            var oid = AsnDecoder.ReadObjectIdentifier(algorithm, AsnEncodingRules.DER, out var oidLength);
            rest = rest[algorithmLength..];
            signature = AsnDecoder.ReadBitString(rest, AsnEncodingRules.DER, out var unusedBits, out var signatureLength);
            if (oidLength != algorithm.Length || unusedBits != 0 || signatureLength != rest.Length)
            {
                return false;
            }
            hash = oid switch
            {
                "1.2.840.10045.4.3.2" => HashAlgorithmName.SHA256,
                "1.2.840.10045.4.3.3" => HashAlgorithmName.SHA384,
                "1.2.840.10045.4.3.4" => HashAlgorithmName.SHA512,
                _ => default,
            };
            return hash != default;
        }
        catch (AsnContentException)
        {
            return false;
        }
    }
}
