using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>Why a presented certificate is not an acceptable X.509-SVID; a metric label as well.</summary>
public enum SvidFailure
{
    None = 0,
    NoCertificate,
    Expired,
    NotYetValid,
    UntrustedChain,
    NotALeaf,
    BadKeyUsage,
    BadSubjectAltName,
    InvalidSpiffeId,
    WrongTrustDomain,
    /// <summary>A valid SVID, but not of an identity the caller expected here.</summary>
    UnexpectedIdentity,
    /// <summary>A valid SVID that an operator revoked (by serial, or every certificate of its SPIFFE ID issued before a time).</summary>
    Revoked,
    /// <summary>The extended key usage does not allow what the certificate is presented for (client or server authentication).</summary>
    BadExtendedKeyUsage,
}

/// <summary>
/// What a presented SVID is used for on this connection. Its extended key usage must allow each purpose asked for (or
/// be anyExtendedKeyUsage), and a leaf without the extension is refused for any purpose: RFC 5280 §4.2.1.12 would read
/// its absence as "any", and the X.509-SVID specification §4.4 only says issuers SHOULD include it, but every SVID the
/// mesh's CA signs carries serverAuth and clientAuth, so a mesh-signed leaf without them was not issued for the mesh.
/// </summary>
[Flags]
public enum SvidPurpose
{
    /// <summary>No purpose checked: the caller only wants the identity.</summary>
    None = 0,
    /// <summary>A client certificate (the peer called us): id-kp-clientAuth.</summary>
    Client = 1,
    /// <summary>A server certificate (we called the peer): id-kp-serverAuth.</summary>
    Server = 2,
}

/// <summary>The outcome of verifying a peer's certificate: the SPIFFE ID, or why not.</summary>
public readonly record struct SvidVerification(SpiffeId Id, SvidFailure Failure, string? Reason)
{
    public bool IsValid => Failure == SvidFailure.None;

    public static SvidVerification Valid(SpiffeId id) => new(id, SvidFailure.None, null);

    public static SvidVerification Invalid(SvidFailure failure, string reason) => new(default, failure, reason);
}

/// <summary>
/// Verifies an X.509-SVID presented by a peer: the chain up to a root of the trust bundle at the given
/// time, then the leaf rules of the SPIFFE X.509-SVID specification (not a CA, digitalSignature without
/// keyCertSign/cRLSign, exactly one URI SAN holding a valid SPIFFE ID of the bundle's trust domain, an extended key
/// usage that allows <see cref="SvidPurpose"/>), and last that no entry of the revocation list covers it.
/// </summary>
public static class SvidVerifier
{
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";
    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string AnyExtendedKeyUsage = "2.5.29.37.0";

    /// <param name="purpose">What the certificate is presented for here; <see cref="SvidPurpose.None"/> checks no extended key usage.</param>
    public static SvidVerification Verify(X509Certificate2? leaf, IEnumerable<X509Certificate2>? intermediates, TrustBundle bundle, DateTimeOffset now,
        RevocationList? revocations = null, SvidPurpose purpose = SvidPurpose.None)
    {
        var verified = VerifyChainAndLeaf(leaf, intermediates, bundle, now, purpose);
        if (verified.IsValid && revocations?.Find(leaf!, verified.Id) is { } revoked)
        {
            return SvidVerification.Invalid(SvidFailure.Revoked,
                $"certificate {RevocationList.NormalizedSerial(leaf!)} of '{verified.Id}' is revoked ({revoked.Describe()})");
        }
        return verified;
    }

    private static SvidVerification VerifyChainAndLeaf(X509Certificate2? leaf, IEnumerable<X509Certificate2>? intermediates, TrustBundle bundle, DateTimeOffset now, SvidPurpose purpose)
    {
        if (leaf is null)
        {
            return SvidVerification.Invalid(SvidFailure.NoCertificate, "no client certificate was presented");
        }
        if (now < leaf.NotBefore.ToUniversalTime())
        {
            return SvidVerification.Invalid(SvidFailure.NotYetValid, $"certificate is not valid before {leaf.NotBefore.ToUniversalTime():O}");
        }
        if (now > leaf.NotAfter.ToUniversalTime())
        {
            return SvidVerification.Invalid(SvidFailure.Expired, $"certificate expired at {leaf.NotAfter.ToUniversalTime():O}");
        }

        var leafRules = CheckLeafRules(leaf, out var id);
        if ((leafRules ?? CheckPurpose(leaf, purpose)) is { } failure)
        {
            return failure;
        }
        if (id.TrustDomain != bundle.TrustDomain)
        {
            return SvidVerification.Invalid(SvidFailure.WrongTrustDomain, $"'{id}' is not in trust domain '{bundle.TrustDomain}'");
        }

        // Fast path: a leaf signed directly by a root (the mesh CA's own leaves) needs one signature check.
        var sameNameRoots = 0;
        foreach (var root in bundle.Signatures)
        {
            switch (root.Verify(leaf, now))
            {
                case true:
                    return SvidVerification.Valid(id);
                case false:
                    sameNameRoots++;
                    break;
            }
        }
        if (sameNameRoots > 0 && (intermediates is null || !intermediates.Any()))
        {
            return SvidVerification.Invalid(SvidFailure.UntrustedChain, $"certificate is not signed by any root of the trust bundle of '{bundle.TrustDomain}'");
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = now.UtcDateTime;
        chain.ChainPolicy.VerificationTimeIgnored = false;
        chain.ChainPolicy.CustomTrustStore.AddRange(bundle.Roots.ToArray());
        if (intermediates is not null)
        {
            chain.ChainPolicy.ExtraStore.AddRange(intermediates.Where(c => !c.RawDataMemory.Span.SequenceEqual(leaf.RawDataMemory.Span)).ToArray());
        }
        if (!chain.Build(leaf))
        {
            var status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()).Distinct());
            return SvidVerification.Invalid(SvidFailure.UntrustedChain, $"certificate does not chain to the trust bundle of '{bundle.TrustDomain}' ({status})");
        }
        return SvidVerification.Valid(id);
    }

    /// <summary>Whether the leaf's extended key usage allows every purpose in <paramref name="purpose"/> (a leaf without one allows none).</summary>
    public static SvidVerification? CheckPurpose(X509Certificate2 leaf, SvidPurpose purpose)
    {
        if (purpose == SvidPurpose.None)
        {
            return null;
        }
        if (leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault() is not { } extension)
        {
            return SvidVerification.Invalid(SvidFailure.BadExtendedKeyUsage,
                $"it has no extended key usage; an SVID presented for {(purpose.HasFlag(SvidPurpose.Client) ? "client" : "server")} authentication must allow it ({(purpose.HasFlag(SvidPurpose.Client) ? "clientAuth" : "serverAuth")})");
        }
        bool client = false, server = false;
        try
        {
            foreach (var usage in extension.EnhancedKeyUsages)
            {
                switch (usage.Value)
                {
                    case AnyExtendedKeyUsage:
                        return null;
                    case ClientAuth:
                        client = true;
                        break;
                    case ServerAuth:
                        server = true;
                        break;
                }
            }
        }
        catch (CryptographicException)
        {
            return SvidVerification.Invalid(SvidFailure.BadExtendedKeyUsage, "the extended key usage extension is malformed");
        }
        if (purpose.HasFlag(SvidPurpose.Client) && !client)
        {
            return SvidVerification.Invalid(SvidFailure.BadExtendedKeyUsage, $"its extended key usage ({Describe(extension)}) does not allow client authentication (clientAuth)");
        }
        if (purpose.HasFlag(SvidPurpose.Server) && !server)
        {
            return SvidVerification.Invalid(SvidFailure.BadExtendedKeyUsage, $"its extended key usage ({Describe(extension)}) does not allow server authentication (serverAuth)");
        }
        return null;
    }

    private static string Describe(X509EnhancedKeyUsageExtension extension)
    {
        var names = extension.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value switch
        {
            ClientAuth => "clientAuth",
            ServerAuth => "serverAuth",
            _ => o.Value ?? "?",
        }).ToList();
        return names.Count == 0 ? "empty" : string.Join(", ", names);
    }

    /// <summary>The leaf-only rules of the X.509-SVID specification, without a chain.</summary>
    public static SvidVerification? CheckLeafRules(X509Certificate2 leaf, out SpiffeId id)
    {
        id = default;
        foreach (var extension in leaf.Extensions)
        {
            if (extension is X509BasicConstraintsExtension { CertificateAuthority: true })
            {
                return SvidVerification.Invalid(SvidFailure.NotALeaf, "a leaf SVID must not be a CA (cA=true)");
            }
        }
        var keyUsage = leaf.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (keyUsage is null || !keyUsage.KeyUsages.HasFlag(X509KeyUsageFlags.DigitalSignature))
        {
            return SvidVerification.Invalid(SvidFailure.BadKeyUsage, "a leaf SVID must have key usage digitalSignature");
        }
        if ((keyUsage.KeyUsages & (X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign)) != 0)
        {
            return SvidVerification.Invalid(SvidFailure.BadKeyUsage, "a leaf SVID must not have keyCertSign or cRLSign");
        }

        SubjectAltNames names;
        try
        {
            names = SubjectAltNames.From(leaf.Extensions.Cast<X509Extension>());
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException)
        {
            return SvidVerification.Invalid(SvidFailure.BadSubjectAltName, "the subject alternative name extension is malformed");
        }
        if (names.Uris.Count != 1)
        {
            return SvidVerification.Invalid(SvidFailure.BadSubjectAltName, $"an SVID must have exactly one URI SAN, this one has {names.Uris.Count}");
        }
        if (!SpiffeId.TryParse(names.Uris[0], out id, out var error))
        {
            return SvidVerification.Invalid(SvidFailure.InvalidSpiffeId, $"URI SAN '{names.Uris[0]}' is not a SPIFFE ID: {error}");
        }
        return null;
    }
}
