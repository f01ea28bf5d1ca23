using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>Which root of the current trust bundle a certificate chains to, by key identifiers (no chain building per call).</summary>
internal static class CertificateRoots
{
    /// <summary>
    /// The SHA-256 fingerprint (lowercase hex) of the bundle root reached from <paramref name="issuerKeyId"/> through
    /// the CA's own chain (signing certificate, intermediates), or null when no root of the current bundle is reached.
    /// </summary>
    public static string? RootOf(string? issuerKeyId, CertificateAuthority ca)
    {
        var roots = ca.Bundle.Roots;
        var issuers = roots.Concat(ca.Intermediates).Append(ca.SigningCertificate).ToList();
        for (var depth = 0; !string.IsNullOrEmpty(issuerKeyId) && depth <= issuers.Count; depth++)
        {
            var issuer = issuers.FirstOrDefault(c => KeyIds.Subject(c) == issuerKeyId);
            if (issuer is null)
            {
                return null;
            }
            if (roots.Any(r => r.RawDataMemory.Span.SequenceEqual(issuer.RawDataMemory.Span)))
            {
                return Convert.ToHexStringLower(SHA256.HashData(issuer.RawDataMemory.Span));
            }
            issuerKeyId = KeyIds.Authority(issuer);
        }
        return null;
    }
}
