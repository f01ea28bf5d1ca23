using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Ca;

/// <summary>Where a CA root rotation stands: none → prepared → active → retiring → none.</summary>
internal enum RotationPhase
{
    /// <summary>One root; it signs.</summary>
    None,
    /// <summary>The next root is in the bundle beside the current one; the current one still signs.</summary>
    Prepared,
    /// <summary>The new root signs; the previous one stays in the bundle until no leaf it signed is live.</summary>
    Active,
    /// <summary>The previous root has left the bundle; waiting for every sidecar to follow that bundle.</summary>
    Retiring,
}

/// <summary>
/// The CA's roots and their roles, and where a rotation stands: the one document a CA store persists next to the CA
/// material (<see cref="ICaStore.SaveRotation"/>), so a restart resumes the phase. Once saved it is what the CA is built
/// from (<see cref="ICaStore.LoadOrCreate"/> gives the material the CA started with). Immutable: each step saves a new one.
/// </summary>
/// <param name="Current">The root that signs, with its key.</param>
/// <param name="Next">Prepared: the root that will sign, with its key.</param>
/// <param name="Previous">Active and retiring: the root that signed before (no key: it signs nothing any more).</param>
/// <param name="BundleSequence">The trust bundle's sequence; raised by every change of its roots, never reset.</param>
/// <param name="PreviousLeavesExpireBy">Active: every leaf the previous root signed has expired by then (before skew).</param>
internal sealed record CaRotationState(
    RotationPhase Phase,
    X509Certificate2 Current,
    X509Certificate2? Next,
    X509Certificate2? Previous,
    ulong BundleSequence,
    DateTimeOffset? PhaseSince,
    DateTimeOffset? PreviousLeavesExpireBy,
    string? StartedBy)
{
    /// <summary>The state of a CA that has never been rotated: its root signs, bundle sequence 1.</summary>
    public static CaRotationState Initial(X509Certificate2 root) => new(RotationPhase.None, root, null, null, 1, null, null, null);

    /// <summary>
    /// The roots sidecars trust in this phase, oldest first: prepared and active hold the same two in the same order, so
    /// activation (which only changes the signer) changes no bundle.
    /// </summary>
    public IReadOnlyList<X509Certificate2> Roots => Phase switch
    {
        RotationPhase.Prepared => [Current, Next!],
        RotationPhase.Active => [Previous!, Current],
        _ => [Current],
    };

    public TrustBundle Bundle(string trustDomain) =>
        new(trustDomain, Roots.Select(r => X509CertificateLoader.LoadCertificate(r.RawData)), BundleSequence);

    /// <summary>The document as stored: JSON with the certificates and keys in PEM.</summary>
    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(new Document(
        Phase.ToString().ToLowerInvariant(),
        BundleSequence,
        Root.Of(Current, withKey: true),
        Next is null ? null : Root.Of(Next, withKey: true),
        Previous is null ? null : Root.Of(Previous, withKey: false),
        PhaseSince,
        PreviousLeavesExpireBy,
        StartedBy), CaRotationJson.Default.Document);

    /// <exception cref="InvalidDataException">Not a rotation document, or a certificate or key in it does not parse.</exception>
    public static CaRotationState FromBytes(ReadOnlySpan<byte> bytes, string source)
    {
        try
        {
            var document = JsonSerializer.Deserialize(bytes, CaRotationJson.Default.Document) ?? throw new InvalidDataException($"{source} is empty");
            if (!Enum.TryParse<RotationPhase>(document.Phase, ignoreCase: true, out var phase) || !Enum.IsDefined(phase))
            {
                throw new InvalidDataException($"{source}: unknown rotation phase '{document.Phase}'");
            }
            var state = new CaRotationState(phase, document.Current.Load(), document.Next?.Load(), document.Previous?.Load(),
                document.BundleSequence, document.PhaseSince, document.PreviousLeavesExpireBy, document.StartedBy);
            var fits = phase switch
            {
                RotationPhase.Prepared => state.Next is not null,
                RotationPhase.Active => state.Previous is not null,
                _ => true,
            };
            if (!fits)
            {
                throw new InvalidDataException($"{source}: the roots do not fit phase {document.Phase}");
            }
            return state;
        }
        catch (Exception e) when (e is JsonException or CryptographicException or ArgumentException)
        {
            throw new InvalidDataException($"{source} is not a CA rotation record: {e.Message}", e);
        }
    }

    internal sealed record Document(
        string Phase,
        ulong BundleSequence,
        Root Current,
        Root? Next,
        Root? Previous,
        DateTimeOffset? PhaseSince,
        DateTimeOffset? PreviousLeavesExpireBy,
        string? StartedBy);

    internal sealed record Root(string Certificate, string? Key)
    {
        public static Root Of(X509Certificate2 certificate, bool withKey) =>
            new(certificate.ExportCertificatePem(), withKey ? Pem.PrivateKeyPem(certificate) : null);

        public X509Certificate2 Load() => Key is null
            ? X509Certificate2.CreateFromPem(Certificate)
            : X509Certificate2.CreateFromPem(Certificate, Key);
    }
}

[JsonSerializable(typeof(CaRotationState.Document))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class CaRotationJson : JsonSerializerContext;

/// <summary>How roots are named to operators: the SHA-256 fingerprint of the DER, as <c>openssl x509 -fingerprint -sha256</c> shows it (without colons).</summary>
internal static class RootFingerprint
{
    public static string Of(X509Certificate2 certificate) => Convert.ToHexStringLower(SHA256.HashData(certificate.RawData));

    /// <summary>The first 16 hex digits: enough to tell roots apart in a table.</summary>
    public static string Short(X509Certificate2 certificate) => Of(certificate)[..16];
}
