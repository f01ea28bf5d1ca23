using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BenchmarkDotNet.Attributes;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Identity;

/// <summary>
/// What the sidecar does with a peer's identity on every new connection: parse the SPIFFE ID and validate the peer's
/// certificate (<see cref="SvidVerifier"/>: chain to the trust bundle + SVID leaf rules). The leaf is issued by the real
/// CA (<see cref="CertificateAuthority"/>, ECDSA P-256), as in the mesh. Baseline: <see cref="X509Chain.Build"/> with the
/// bundle as custom root trust, the general-purpose way to do the chain part alone.
/// </summary>
[MemoryDiagnoser]
public class IdentityBenchmarks
{
    private const string WorkloadId = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string InvalidId = "spiffe://cluster.local/ns/shop/sa/../orders";

    private CertificateAuthority _ca = null!;
    private TrustBundle _bundle = null!;
    private X509Certificate2 _leaf = null!;
    private X509Certificate2 _foreignLeaf = null!;
    private X509Certificate2[] _intermediates = null!;
    private X509Chain _chain = null!;

    [GlobalSetup]
    public void Setup()
    {
        var time = TimeProvider.System;
        var root = FileCaStore.CreateRoot(SpiffeId.DefaultTrustDomain, time);
        _bundle = new TrustBundle(SpiffeId.DefaultTrustDomain, [X509CertificateLoader.LoadCertificate(root.RawData)], 1);
        _ca = new CertificateAuthority(root, [], _bundle, time);
        _intermediates = [.. _ca.ChainAfterLeaf];
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _leaf = _ca.IssueSvid(SpiffeId.Parse(WorkloadId), new CertificateRequest("O=x", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));

        // The same kind of leaf from a CA the bundle does not hold: must be refused.
        var foreignRoot = FileCaStore.CreateRoot(SpiffeId.DefaultTrustDomain, time);
        var foreign = new CertificateAuthority(foreignRoot, [], new TrustBundle(SpiffeId.DefaultTrustDomain, [X509CertificateLoader.LoadCertificate(foreignRoot.RawData)], 1), time);
        _foreignLeaf = foreign.IssueSvid(SpiffeId.Parse(WorkloadId), new CertificateRequest("O=x", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        foreign.SigningCertificate.Dispose();

        _chain = new X509Chain();
        _chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        _chain.ChainPolicy.CustomTrustStore.AddRange(_bundle.Roots.ToArray());
        _chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (!VerifyPeer() || VerifyForeignPeer())
        {
            throw new InvalidOperationException("benchmark setup: the mesh leaf must verify and the foreign leaf must not");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _chain.Dispose();
        _leaf.Dispose();
        _foreignLeaf.Dispose();
        _ca.SigningCertificate.Dispose();
    }

    [Benchmark(Description = "SpiffeId.TryParse (valid workload ID)")]
    public bool ParseValid() => SpiffeId.TryParse(WorkloadId, out _);

    [Benchmark(Description = "SpiffeId.TryParse (dot segment: refused)")]
    public bool ParseInvalid() => SpiffeId.TryParse(InvalidId, out _, out _);

    [Benchmark(Description = "SpiffeId.TryParse + TryGetWorkload")]
    public bool ParseWorkload() => SpiffeId.TryParse(WorkloadId, out var id) && id.TryGetWorkload(out _, out _);

    [Benchmark(Baseline = true, Description = "baseline: X509Chain.Build (bundle as custom root trust)")]
    public bool ChainBuild()
    {
        var ok = _chain.Build(_leaf);
        _chain.Reset();
        return ok;
    }

    [Benchmark(Description = "SvidVerifier.Verify (peer SVID from the mesh CA)")]
    public bool VerifyPeer() => SvidVerifier.Verify(_leaf, _intermediates, _bundle, DateTimeOffset.UtcNow).IsValid;

    [Benchmark(Description = "SvidVerifier.Verify (peer SVID from a foreign CA: refused)")]
    public bool VerifyForeignPeer() => SvidVerifier.Verify(_foreignLeaf, [], _bundle, DateTimeOffset.UtcNow).IsValid;
}
