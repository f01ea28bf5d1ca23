using System.Security.Cryptography.X509Certificates;

namespace ZeroTrustMesh.Identity;

/// <summary>
/// The set of root certificates a trust domain's SVIDs chain to. More than one root exists while the CA
/// is rotated (add the new root, re-issue, remove the old one), so verification accepts any of them.
/// Immutable: a new bundle replaces the old one as a whole.
/// </summary>
public sealed class TrustBundle
{
    public TrustBundle(string trustDomain, IEnumerable<X509Certificate2> roots, ulong sequence)
    {
        SpiffeId.ForTrustDomain(trustDomain); // validates the name
        TrustDomain = trustDomain;
        Roots = [.. roots];
        if (Roots.Count == 0)
        {
            throw new ArgumentException("A trust bundle needs at least one root certificate.", nameof(roots));
        }
        Sequence = sequence;
        Signatures = [.. Roots.Select(r => new IssuerSignature(r))];
    }

    /// <summary>Cached verifiers for leaves signed directly by one of the roots.</summary>
    internal IReadOnlyList<IssuerSignature> Signatures { get; }

    public string TrustDomain { get; }

    public IReadOnlyList<X509Certificate2> Roots { get; }

    public ulong Sequence { get; }

    public string ToPem() => string.Concat(Roots.Select(r => r.ExportCertificatePem() + "\n"));

    public static TrustBundle FromPem(string trustDomain, string pem, ulong sequence = 0)
    {
        var collection = new X509Certificate2Collection();
        collection.ImportFromPem(pem);
        return new TrustBundle(trustDomain, collection, sequence);
    }

    public static TrustBundle FromDer(string trustDomain, IEnumerable<ReadOnlyMemory<byte>> roots, ulong sequence) =>
        new(trustDomain, roots.Select(r => X509CertificateLoader.LoadCertificate(r.Span)), sequence);

    public bool SameRootsAs(TrustBundle other) =>
        Roots.Count == other.Roots.Count && Roots.Zip(other.Roots).All(p => p.First.RawDataMemory.Span.SequenceEqual(p.Second.RawDataMemory.Span));
}
