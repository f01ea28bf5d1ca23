using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>A CSR whose signature and key passed the checks: the key to certify and the SPIFFE ID it asks for, if any.</summary>
internal sealed record ValidatedCsr(PublicKey PublicKey, SpiffeId? RequestedId, string KeyDescription);

/// <summary>
/// Checks a PKCS#10 CSR before anything is spent on it: it parses, its self-signature verifies (proof of
/// possession of the key), the key is ECDSA P-256/P-384 or RSA 2048–8192, it does not ask to be a CA, and
/// its SANs are at most one URI holding a valid SPIFFE ID. Whether that ID is the proven one is the
/// issuer's check, since only the issuer knows the proof.
/// </summary>
internal static class CsrValidator
{
    public const int MaxCsrBytes = 8 * 1024;
    private const string Secp256r1 = "1.2.840.10045.3.1.7";
    private const string Secp384r1 = "1.3.132.0.34";

    public static ValidatedCsr Validate(ReadOnlySpan<byte> der)
    {
        if (der.IsEmpty)
        {
            throw new IssuanceRefusedException(RefusalKind.InvalidRequest, "the CSR is empty");
        }
        if (der.Length > MaxCsrBytes)
        {
            throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR is {der.Length} bytes; at most {MaxCsrBytes} are accepted");
        }

        // Parse first, then verify the self-signature (proof of possession), so the caller is told which of the two failed.
        CertificateRequest request;
        try
        {
            // The extension request is loaded so it can be inspected; the signature is CsrSignature's.
            request = CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, out var read,
                CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions | CertificateRequestLoadOptions.SkipSignatureValidation, RSASignaturePadding.Pkcs1);
            if (read != der.Length)
            {
                throw new IssuanceRefusedException(RefusalKind.InvalidRequest, "the CSR has trailing data");
            }
        }
        catch (CryptographicException e)
        {
            throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR is malformed: it is not a DER PKCS#10 request ({e.Message.TrimEnd('.')})");
        }
        try
        {
            CsrSignature.Verify(der, request.PublicKey);
        }
        catch (CryptographicException e)
        {
            throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR's signature does not verify with the key it carries ({e.Message.TrimEnd('.')})");
        }

        var keyDescription = CheckKey(request.PublicKey);

        foreach (var extension in request.CertificateExtensions)
        {
            if (extension is X509BasicConstraintsExtension { CertificateAuthority: true })
            {
                throw new IssuanceRefusedException(RefusalKind.InvalidRequest, "the CSR asks for a CA certificate (cA=true); workloads get leaf certificates only");
            }
        }

        SubjectAltNames names;
        try
        {
            names = SubjectAltNames.From(request.CertificateExtensions);
        }
        catch (AsnContentException)
        {
            throw new IssuanceRefusedException(RefusalKind.InvalidRequest, "the CSR's subject alternative names are malformed");
        }
        if (names.OtherNames > 0 || names.Uris.Count > 1)
        {
            throw new IssuanceRefusedException(RefusalKind.InvalidRequest,
                $"the CSR asks for {names.Count} subject alternative names; an SVID has exactly one, the SPIFFE ID");
        }
        SpiffeId? requested = null;
        if (names.Uris.Count == 1)
        {
            if (!SpiffeId.TryParse(names.Uris[0], out var id, out var error))
            {
                throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR's URI SAN '{names.Uris[0]}' is not a SPIFFE ID: {error}");
            }
            requested = id;
        }
        return new ValidatedCsr(request.PublicKey, requested, keyDescription);
    }

    private static string CheckKey(PublicKey key)
    {
        switch (key.Oid.Value)
        {
            case "1.2.840.10045.2.1":
                var curve = key.EncodedParameters?.RawData is { } p && p.Length > 2 ? new AsnReader(p, AsnEncodingRules.DER).ReadObjectIdentifier() : "";
                return curve switch
                {
                    Secp256r1 => "ECDSA P-256",
                    Secp384r1 => "ECDSA P-384",
                    _ => throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR's EC key uses curve {curve}; only P-256 and P-384 are accepted"),
                };
            case "1.2.840.113549.1.1.1":
                using (var rsa = key.GetRSAPublicKey() ?? throw new IssuanceRefusedException(RefusalKind.InvalidRequest, "the CSR's RSA key is malformed"))
                {
                    return rsa.KeySize is >= 2048 and <= 8192
                        ? $"RSA {rsa.KeySize}"
                        : throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR's RSA key has {rsa.KeySize} bits; 2048 to 8192 are accepted");
                }
            default:
                throw new IssuanceRefusedException(RefusalKind.InvalidRequest, $"the CSR's key algorithm {key.Oid.Value} is not supported; use ECDSA P-256");
        }
    }
}

/// <summary>How a refusal maps onto the API: a bad request, an unproven caller, or a proven caller asking for too much.</summary>
internal enum RefusalKind { InvalidRequest, Unauthenticated, PermissionDenied }

/// <summary>An issuance refused for a reason the caller is told. Thrown inside the issuer, caught once in the API adapter.</summary>
internal sealed class IssuanceRefusedException(RefusalKind kind, string reason) : Exception(reason)
{
    public RefusalKind Kind { get; } = kind;
}
