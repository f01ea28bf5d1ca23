using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.DecisionLog;

/// <summary>
/// A sidecar's signed statement "record <see cref="Sequence"/> of my chain <see cref="Chain"/> has hash
/// <see cref="Hash"/>", made at <see cref="Time"/> with the private key of its SVID; <see cref="Certificates"/> is that
/// SVID (DER, leaf first, then intermediates). Collected by the control plane, so that a log edited, cut or reordered
/// on the sidecar's disk afterwards no longer matches.
/// </summary>
public sealed record Checkpoint(string Workload, string Chain, long Sequence, string Hash, DateTimeOffset Time, string Segment, byte[] Signature, IReadOnlyList<byte[]> Certificates)
{
    /// <summary>The bytes that are signed: a fixed label and the fields, one per line (time in Unix milliseconds).</summary>
    public byte[] SignedBytes() => Encoding.UTF8.GetBytes(string.Join('\n',
        "ztm-decision-log-checkpoint/v1", Workload, Chain, Sequence.ToString(CultureInfo.InvariantCulture), Hash,
        Time.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture), Segment));

    /// <summary>Signs with the SVID's private key (ECDSA with SHA-256, IEEE P1363; RSA PKCS#1 v1.5 with SHA-256 for an RSA SVID).</summary>
    /// <param name="svid">The sidecar's current certificate, with its private key.</param>
    public static Checkpoint Sign(string workload, string chain, long sequence, string hash, DateTimeOffset time, string segment,
        X509Certificate2 svid, IEnumerable<X509Certificate2> intermediates)
    {
        var unsigned = new Checkpoint(workload, chain, sequence, hash, DateTimeOffset.FromUnixTimeMilliseconds(time.ToUnixTimeMilliseconds()), segment, [],
            [svid.RawData, .. intermediates.Select(c => c.RawData)]);
        var data = unsigned.SignedBytes();
        byte[] signature;
        using (var ecdsa = svid.GetECDsaPrivateKey())
        {
            if (ecdsa is not null)
            {
                signature = ecdsa.SignData(data, HashAlgorithmName.SHA256);
                return unsigned with { Signature = signature };
            }
        }
        using var rsa = svid.GetRSAPrivateKey() ?? throw new CryptographicException("the SVID has no ECDSA or RSA private key");
        return unsigned with { Signature = rsa.SignData(data, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1) };
    }

    /// <summary>
    /// Whether the signature is the leaf's over these fields and the leaf's SPIFFE ID is <see cref="Workload"/>; with a
    /// <paramref name="bundle"/>, also that the leaf was a valid SVID of that trust domain at <paramref name="at"/>
    /// (default: the checkpoint's own time). Null when all holds, else why not.
    /// </summary>
    public string? Problem(TrustBundle? bundle = null, DateTimeOffset? at = null)
    {
        if (Certificates.Count == 0)
        {
            return "it carries no certificate";
        }
        X509Certificate2 leaf;
        List<X509Certificate2> intermediates;
        try
        {
            leaf = X509CertificateLoader.LoadCertificate(Certificates[0]);
            intermediates = [.. Certificates.Skip(1).Select(c => X509CertificateLoader.LoadCertificate(c))];
        }
        catch (CryptographicException e)
        {
            return $"its certificate cannot be read ({e.Message})";
        }
        using (leaf)
        {
            try
            {
                var uris = SubjectAltNames.From(leaf.Extensions).Uris;
                if (uris.Count != 1 || uris[0] != Workload)
                {
                    return $"it is for '{Workload}' but signed by a certificate for '{string.Join(", ", uris)}'";
                }
                if (bundle is not null)
                {
                    var verification = SvidVerifier.Verify(leaf, intermediates, bundle, at ?? Time);
                    if (!verification.IsValid)
                    {
                        return $"its certificate is not a valid SVID of this mesh: {verification.Reason}";
                    }
                }
                var data = SignedBytes();
                using var ecdsa = leaf.GetECDsaPublicKey();
                if (ecdsa is not null)
                {
                    return ecdsa.VerifyData(data, Signature, HashAlgorithmName.SHA256) ? null : "the signature does not match its fields";
                }
                using var rsa = leaf.GetRSAPublicKey();
                return rsa is not null && rsa.VerifyData(data, Signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
                    ? null : "the signature does not match its fields";
            }
            catch (Exception e) when (e is CryptographicException or System.Formats.Asn1.AsnContentException)
            {
                return $"its signature cannot be checked ({e.Message})";
            }
            finally
            {
                intermediates.ForEach(c => c.Dispose());
            }
        }
    }

    /// <summary>One JSON line, as <c>ztmctl audit checkpoints</c> prints them and <c>--checkpoints FILE</c> reads them.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, CheckpointJson.Default.Checkpoint);

    /// <summary>Reads a file of checkpoints, one JSON object per line (blank lines skipped).</summary>
    /// <exception cref="InvalidDataException">A line is not a checkpoint: the message names the line.</exception>
    public static List<Checkpoint> ReadLines(IEnumerable<string> lines)
    {
        var checkpoints = new List<Checkpoint>();
        var number = 0;
        foreach (var line in lines)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            try
            {
                var checkpoint = JsonSerializer.Deserialize(line, CheckpointJson.Default.Checkpoint);
                if (checkpoint is null || checkpoint.Workload is null || checkpoint.Chain is null || checkpoint.Hash is null || checkpoint.Signature is null || checkpoint.Certificates is null)
                {
                    throw new InvalidDataException($"line {number}: not a checkpoint (workload, chain, hash, signature and certificates are required)");
                }
                checkpoints.Add(checkpoint);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"line {number}: not a checkpoint: {e.Message}", e);
            }
        }
        return checkpoints;
    }
}

[JsonSerializable(typeof(Checkpoint))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class CheckpointJson : JsonSerializerContext;
