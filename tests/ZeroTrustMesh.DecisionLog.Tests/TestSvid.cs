using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.DecisionLog.Tests;

/// <summary>A throwaway CA and an SVID with its private key, minted here, as the sidecar holds one.</summary>
internal sealed class TestSvid : IDisposable
{
    public const string Workload = "spiffe://cluster.local/ns/shop/sa/orders";

    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public TestSvid(string workload = Workload)
    {
        var now = DateTimeOffset.UtcNow;
        var from = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero); // before the fixture's fixed times
        var ca = new CertificateRequest("CN=test CA", _caKey, HashAlgorithmName.SHA256);
        ca.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        ca.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        ca.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(ca.PublicKey, false));
        Ca = ca.CreateSelfSigned(from, now.AddDays(1));
        Bundle = new TrustBundle("cluster.local", [Ca], 1);

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = new CertificateRequest("O=test", key, HashAlgorithmName.SHA256);
        leaf.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        leaf.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(workload));
        leaf.CertificateExtensions.Add(san.Build());
        leaf.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Ca, true, false));
        using var signed = leaf.Create(Ca.SubjectName, X509SignatureGenerator.CreateForECDsa(_caKey), from, now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        Certificate = signed.CopyWithPrivateKey(key);
    }

    public X509Certificate2 Ca { get; }

    public TrustBundle Bundle { get; }

    public X509Certificate2 Certificate { get; }

    public Checkpoint Sign(ChainWriter writer, DateTimeOffset time) =>
        Checkpoint.Sign(Workload, writer.Chain, writer.Sequence, writer.Hash, time, writer.Segment, Certificate, []);

    public void Dispose()
    {
        Certificate.Dispose();
        Ca.Dispose();
        _caKey.Dispose();
    }
}
