using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar.Tests.Identity;

/// <summary>Rotation on a fake clock: renewal at half-life, keep-and-retry on failure, fail closed at expiry.</summary>
public sealed class CertificateRotatorTests : IAsyncLifetime
{
    private static readonly TimeSpan Lifetime = TimeSpan.FromHours(1);
    private static readonly TimeSpan Signal = TimeSpan.FromSeconds(10);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly FakeIssuer _issuer;
    private readonly IdentityState _state;
    private readonly StubLifetime _lifetime = new();
    private readonly CertificateRotator _rotator;

    public CertificateRotatorTests()
    {
        _issuer = new FakeIssuer(_time);
        _state = new IdentityState(_time);
        var options = new SidecarOptions
        {
            ControlPlane = new Uri("https://127.0.0.1:1"),
            BootstrapBundle = _issuer.Bundle,
            Proof = new IdentityProof.JoinToken("ztmjt_test"),
            AdminPort = 0,
            InboundEndpoint = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            OutboundPort = 0,
            AppPorts = [],
            TcpPorts = [],
        };
        _rotator = new CertificateRotator(_issuer, _state, options, _time, _lifetime, NullLogger<CertificateRotator>.Instance);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _rotator.StopAsync(CancellationToken.None);
        _rotator.Dispose();
    }

    [Fact]
    public async Task Renews_at_half_life_with_the_current_certificate_and_a_new_key()
    {
        var scheduled = NextSchedule();
        await _rotator.StartAsync(CancellationToken.None);
        await _rotator.FirstIdentity.WaitAsync(Signal);
        var first = _state.Current!;
        Assert.True(_state.IsReady);
        Assert.Equal("ztmjt_test", _issuer.TokensSeen.Single());

        var renewAt = await scheduled.Task.WaitAsync(Signal);
        Assert.InRange(renewAt, first.NotBefore + (Lifetime * 0.45), first.NotBefore + (Lifetime * 0.55));

        var renewed = NextIdentity();
        scheduled = NextSchedule();
        _time.Advance(renewAt - _time.GetUtcNow() - TimeSpan.FromSeconds(1));
        Assert.Empty(_issuer.Renewals); // not a second early
        _time.Advance(TimeSpan.FromSeconds(1));
        var second = await renewed.Task.WaitAsync(Signal);

        var renewal = Assert.Single(_issuer.Renewals);
        Assert.Equal(renewAt, renewal.At);
        Assert.Same(first, renewal.PresentedIdentity);   // authenticated with the current certificate
        Assert.Equal(first.Id.Value, renewal.CsrUri);       // asking for the same identity
        Assert.NotEqual(first.Serial, second.Serial);
        Assert.False(first.Certificate.GetECDsaPublicKey()!.ExportSubjectPublicKeyInfo()
            .SequenceEqual(second.Certificate.GetECDsaPublicKey()!.ExportSubjectPublicKeyInfo()));
        Assert.True(_state.IsReady);

        // And the next one is scheduled at the new certificate's half-life.
        var next = await scheduled.Task.WaitAsync(Signal);
        Assert.InRange(next, second.NotBefore + (Lifetime * 0.45), second.NotBefore + (Lifetime * 0.55));
    }

    [Fact]
    public async Task Keeps_its_certificate_while_the_control_plane_is_down_and_fails_closed_only_at_expiry()
    {
        var scheduled = NextSchedule();
        await _rotator.StartAsync(CancellationToken.None);
        await _rotator.FirstIdentity.WaitAsync(Signal);
        var first = _state.Current!;
        var renewAt = await scheduled.Task.WaitAsync(Signal);

        // Follow every retry the rotator schedules up to expiry: it keeps the certificate and backs off.
        _issuer.Down = true;
        var attemptAt = renewAt;
        var gaps = new List<TimeSpan>();
        while (attemptAt < first.NotAfter)
        {
            scheduled = NextSchedule();
            _time.Advance(attemptAt - _time.GetUtcNow());
            var retryAt = await scheduled.Task.WaitAsync(Signal);
            Assert.Same(first, _state.Current);
            Assert.Equal(_time.GetUtcNow() < first.NotAfter, _state.IsReady);
            gaps.Add(retryAt - attemptAt);
            attemptAt = retryAt;
        }
        Assert.InRange(gaps.Count, 10, 400);
        Assert.All(gaps, g => Assert.InRange(g, TimeSpan.FromSeconds(0.25), RotationSchedule.MaxBackoff));
        Assert.Equal(gaps.Count, _issuer.FailedAttempts);

        if (first.NotAfter + TimeSpan.FromSeconds(1) - _time.GetUtcNow() is { Ticks: > 0 } toExpiry)
        {
            _time.Advance(toExpiry);
        }
        Assert.False(_state.IsReady);              // expired: fail closed
        Assert.Null(_state.Valid);

        var recovered = NextIdentity();
        _issuer.Down = false;
        _time.Advance(RotationSchedule.MaxBackoff);
        await recovered.Task.WaitAsync(Signal);
        Assert.True(_state.IsReady);
    }

    [Fact]
    public async Task A_refused_join_token_stops_the_sidecar_and_it_never_becomes_ready()
    {
        _issuer.RefuseToken = true;
        await _rotator.StartAsync(CancellationToken.None);
        await Assert.ThrowsAsync<IdentityRefusedException>(() => _rotator.FirstIdentity.WaitAsync(Signal));
        Assert.True(_lifetime.Stopped);
        Assert.False(_state.IsReady);
    }

    [Fact]
    public async Task An_unreachable_control_plane_at_start_is_retried_until_it_answers()
    {
        _issuer.Down = true;
        var retry = NextSchedule();
        await _rotator.StartAsync(CancellationToken.None);
        await _issuer.FirstSignAttempt.Task.WaitAsync(Signal);
        var retryAt = await retry.Task.WaitAsync(Signal); // the retry is scheduled: advancing the clock now fires it
        Assert.False(_state.IsReady);

        _issuer.Down = false;
        _time.Advance(retryAt - _time.GetUtcNow());
        await _rotator.FirstIdentity.WaitAsync(Signal);
        Assert.True(_state.IsReady);
    }

    private TaskCompletionSource<DateTimeOffset> NextSchedule()
    {
        var tcs = new TaskCompletionSource<DateTimeOffset>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Handler(DateTimeOffset at)
        {
            _rotator.RenewalScheduled -= Handler;
            tcs.TrySetResult(at);
        }
        _rotator.RenewalScheduled += Handler;
        return tcs;
    }

    private TaskCompletionSource<WorkloadIdentity> NextIdentity()
    {
        var tcs = new TaskCompletionSource<WorkloadIdentity>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Handler(WorkloadIdentity identity)
        {
            _state.Changed -= Handler;
            tcs.TrySetResult(identity);
        }
        _state.Changed += Handler;
        return tcs;
    }

    private sealed class StubLifetime : IHostApplicationLifetime
    {
        public bool Stopped { get; private set; }

        public CancellationToken ApplicationStarted => CancellationToken.None;

        public CancellationToken ApplicationStopping => CancellationToken.None;

        public CancellationToken ApplicationStopped => CancellationToken.None;

        public void StopApplication() => Stopped = true;
    }

    /// <summary>A control plane on the fake clock: a real CA key signing real SVIDs, or an outage on demand.</summary>
    private sealed class FakeIssuer : IIdentityIssuer
    {
        private readonly FakeTimeProvider _time;
        private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        private readonly X509Certificate2 _ca;
        private readonly SpiffeId _id = SpiffeId.ForWorkload("cluster.local", "shop", "orders");
        private int _failed;

        public FakeIssuer(FakeTimeProvider time)
        {
            _time = time;
            var request = new CertificateRequest("CN=fake CA", _caKey, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
            _ca = request.CreateSelfSigned(time.GetUtcNow().AddDays(-1), time.GetUtcNow().AddDays(30));
            Bundle = new TrustBundle("cluster.local", [_ca], 1);
        }

        public TrustBundle Bundle { get; }

        public volatile bool Down;
        public volatile bool RefuseToken;

        public List<string> TokensSeen { get; } = [];

        public List<(DateTimeOffset At, WorkloadIdentity PresentedIdentity, string? CsrUri)> Renewals { get; } = [];

        public int FailedAttempts => Volatile.Read(ref _failed);

        public TaskCompletionSource FirstRenewAttempt { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource FirstSignAttempt { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<IssuedCertificate> SignAsync(byte[] csr, IdentityProof proof, CancellationToken cancellation)
        {
            FirstSignAttempt.TrySetResult();
            if (RefuseToken)
            {
                throw new IdentityRefusedException("unknown join token (Unauthenticated)");
            }
            ThrowIfDown();
            lock (TokensSeen)
            {
                TokensSeen.Add(((IdentityProof.JoinToken)proof).Token);
            }
            return Task.FromResult(Issue(csr));
        }

        public Task<IssuedCertificate> RenewAsync(byte[] csr, WorkloadIdentity current, CancellationToken cancellation)
        {
            FirstRenewAttempt.TrySetResult();
            ThrowIfDown();
            var request = CertificateRequest.LoadSigningRequest(csr, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
            lock (Renewals)
            {
                Renewals.Add((_time.GetUtcNow(), current, SubjectAltNames.From(request.CertificateExtensions).Uris.SingleOrDefault()));
            }
            return Task.FromResult(Issue(csr));
        }

        private void ThrowIfDown()
        {
            if (Down)
            {
                Interlocked.Increment(ref _failed);
                throw new RpcException(new Status(StatusCode.Unavailable, "connection refused"));
            }
        }

        private IssuedCertificate Issue(byte[] csr)
        {
            var request = CertificateRequest.LoadSigningRequest(csr, HashAlgorithmName.SHA256);
            var leaf = new CertificateRequest(new X500DistinguishedName("O=test"), request.PublicKey, HashAlgorithmName.SHA256);
            leaf.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            leaf.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
            // As the mesh CA issues them: server and client authentication.
            leaf.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
            leaf.CertificateExtensions.Add(SubjectAltNames.ForUri(_id.Value));
            var now = _time.GetUtcNow();
            using var certificate = leaf.Create(_ca.SubjectName, X509SignatureGenerator.CreateForECDsa(_caKey), now, now + Lifetime, RandomNumberGenerator.GetBytes(16));
            return new IssuedCertificate(_id.Value, [certificate.RawData], Bundle);
        }
    }
}
