using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroTrustMesh.ControlPlane;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Ca;

/// <summary>
/// The CA's per-signing work, piece by piece, against a baseline in the same run: one raw ECDSA P-256
/// sign + verify of a 32-byte hash (the two public-key operations any signing needs at minimum: the CSR's
/// proof-of-possession check and the CA's signature). Ratios in the report read as "N× a raw sign+verify".
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 12)]
public class SigningBenchmarks
{
    private const string WorkloadId = "spiffe://cluster.local/ns/shop/sa/orders";

    private ECDsa _rawKey = null!;
    private byte[] _hash = null!;
    private CertificateAuthority _ca = null!;
    private SvidIssuer _issuer = null!;
    private byte[] _csr = null!;
    private PublicKey _csrKey = null!;
    private byte[] _csrKeySignature = null!;
    private SpiffeId _id;
    private X509Certificate2 _caller = null!;
    private X509Certificate2[] _chainAfterLeaf = null!;

    [GlobalSetup]
    public void Setup()
    {
        _rawKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _hash = SHA256.HashData("ztm benchmark baseline"u8);

        var time = TimeProvider.System;
        var root = FileCaStore.CreateRoot(SpiffeId.DefaultTrustDomain, time);
        var bundle = new TrustBundle(SpiffeId.DefaultTrustDomain, [X509CertificateLoader.LoadCertificate(root.RawData)], 1);
        _ca = new CertificateAuthority(root, [], bundle, time);
        _id = SpiffeId.Parse(WorkloadId);
        _chainAfterLeaf = [.. _ca.ChainAfterLeaf];

        using var workloadKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh", workloadKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(WorkloadId)); // as the sidecar sends it
        _csr = request.CreateSigningRequest();
        _csrKey = request.PublicKey;
        _csrKeySignature = workloadKey.SignHash(_hash);

        // The caller's current SVID, as a renewing sidecar presents it over mTLS.
        using var callerKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var callerLeaf = _ca.IssueSvid(_id, new CertificateRequest("O=x", callerKey, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        _caller = callerLeaf.CopyWithPrivateKey(callerKey);

        var options = new ControlPlaneOptions
        {
            DataDir = Path.GetTempPath(),
            ListenAddress = IPAddress.Loopback,
            Port = 0,
            TrustDomain = SpiffeId.DefaultTrustDomain,
            SvidTtl = TimeSpan.FromHours(1),
            JoinTokenTtl = TimeSpan.FromMinutes(10),
            OperatorConfigPath = Path.Combine(Path.GetTempPath(), "ztm-bench-unused-config"),
        };
        // NullLogger: the control plane logs one line per issuance; its cost is in the load run, not here.
        _issuer = new SvidIssuer(_ca, new Attestors([new FixedAttestor(_id)]), new CallerVerifier(_ca, new NoRevocations()), options, new ControlPlaneMetrics(), NullLogger<SvidIssuer>.Instance);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _rawKey.Dispose();
        _caller.Dispose();
        _ca.SigningCertificate.Dispose();
    }

    [Benchmark(Baseline = true, Description = "baseline: ECDSA P-256 sign+verify (32-byte hash)")]
    public bool RawSignVerify()
    {
        Span<byte> signature = stackalloc byte[64];
        _rawKey.TrySignHash(_hash, signature, out var written);
        return _rawKey.VerifyHash(_hash, signature[..written]);
    }

    [Benchmark(Description = "SpiffeId.TryParse")]
    public bool SpiffeIdTryParse() => SpiffeId.TryParse(WorkloadId, out _);

    [Benchmark(Description = "CsrValidator.Validate (P-256 CSR)")]
    public bool CsrValidate() => CsrValidator.Validate(_csr).RequestedId is not null;

    /// <summary>What the CSR check imported its key with before: .NET's EC import (check_key twice, then a provider key on first use).</summary>
    [Benchmark(Description = "CSR key import + verify: PublicKey.GetECDsaPublicKey")]
    public bool DotNetImportVerify()
    {
        using var key = _csrKey.GetECDsaPublicKey()!;
        return key.VerifyHash(_hash, _csrKeySignature);
    }

    [Benchmark(Description = "CSR key import + verify: EcPublicKeys.Import")]
    public bool DirectImportVerify()
    {
        using var key = EcPublicKeys.Import(_csrKey);
        return key.VerifyHash(_hash, _csrKeySignature);
    }

    [Benchmark(Description = "CertificateAuthority.SignSvid")]
    public int IssueSvid()
    {
        var leaf = _ca.SignSvid(_id, _csrKey, TimeSpan.FromHours(1));
        return leaf.Der.Length;
    }

    [Benchmark(Description = "SvidVerifier.Verify (caller SVID)")]
    public bool VerifyCallerSvid() => SvidVerifier.Verify(_caller, _chainAfterLeaf, _ca.Bundle, DateTimeOffset.UtcNow).IsValid;

    /// <summary>SvidIssuer.Sign with an attestor that accepts at once: CSR validation + identity check + signing.</summary>
    [Benchmark(Description = "SvidIssuer.Sign (validate+sign)")]
    public int IssuerSign()
    {
        return _issuer.SignAsync(_csr, Proof, "bench", CancellationToken.None).GetAwaiter().GetResult().Leaf.Der.Length;
    }

    /// <summary>SvidIssuer.Renew, what RenewCertificate runs: caller SVID verification + CSR validation + signing.</summary>
    [Benchmark(Description = "SvidIssuer.Renew (verify caller+validate+sign)")]
    public int IssuerRenew()
    {
        return _issuer.Renew(_csr, _caller, "bench").Leaf.Der.Length;
    }

    private static readonly JoinTokenProof Proof = new("proof");

    /// <summary>Proves one fixed identity: takes the join-token store (a file write per token) out of the measurement.</summary>
    private sealed class FixedAttestor(SpiffeId id) : IAttestor
    {
        public string Kind => JoinTokenProof.KindName;

        public ValueTask<SpiffeId> AttestAsync(IdentityProof proof, Action<SpiffeId> accept, CancellationToken cancellation)
        {
            accept(id);
            return ValueTask.FromResult(id);
        }
    }

    /// <summary>An empty revocation list: renewal checks it, as the control plane does, without a file.</summary>
    private sealed class NoRevocations : IRevocationStore
    {
        public RevocationList Current => RevocationList.Empty;

        public event Action<RevocationChange>? Changed
        {
            add { }
            remove { }
        }

        public bool Revise(Func<RevocationList, (RevocationList Next, IReadOnlyList<string> Subjects)> change, string action, string actor, string? reason) =>
            throw new NotSupportedException();
    }
}
