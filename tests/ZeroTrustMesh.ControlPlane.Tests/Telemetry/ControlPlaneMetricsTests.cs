using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading.Channels;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Prometheus;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Attestation;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Telemetry;

/// <summary>The control plane counts what it does where it does it, and serves it in Prometheus's text format.</summary>
public sealed partial class ControlPlaneMetricsTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private static readonly SpiffeId Orders = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders");

    private readonly string _dataDir = Directory.CreateTempSubdirectory("ztm-metrics-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private ControlPlaneParts _parts = null!;

    public async Task InitializeAsync() => _parts = await ControlPlaneParts.StartAsync(_dataDir, _time);

    public async Task DisposeAsync()
    {
        await _parts.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
    }

    [Fact]
    public async Task Every_labelled_series_exists_at_zero_before_anything_happens()
    {
        var text = await ScrapeAsync(_parts.Get<ControlPlaneMetrics>().Registry);

        foreach (var outcome in new[] { "injected", "skipped", "refused", "error" })
        {
            Assert.Equal(0, Sample(text, "ztm_injection_requests_total", ("outcome", outcome)));
        }
        Assert.Equal(3, Count(text, "ztm_svid_issued_total"));
        Assert.Equal(6, Count(text, "ztm_svid_refused_total"));
        Assert.Equal(0, Sample(text, "ztm_connected_sidecars"));
        Assert.Equal(0, Sample(text, "ztm_config_version"));
        var ca = _parts.Get<CertificateAuthority>();
        var serial = ca.SigningCertificate.SerialNumber.ToLowerInvariant();
        Assert.Equal(new DateTimeOffset(ca.SigningCertificate.NotAfter.ToUniversalTime()).ToUnixTimeSeconds(),
            Sample(text, "ztm_ca_certificate_expiry_timestamp_seconds", ("role", "root"), ("serial", serial)));
        Assert.Equal(1, Count(text, "ztm_ca_certificate_expiry_timestamp_seconds", ("role", "signing")));
        Assert.Contains("\nprocess_cpu_seconds_total ", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_signing_is_counted_by_the_proof_and_a_refusal_by_its_reason()
    {
        var issuer = _parts.Get<SvidIssuer>();
        var (token, _) = _parts.Get<IJoinTokenStore>().Create(Orders, TimeSpan.FromMinutes(5));

        await issuer.SignAsync(Csr(), new JoinTokenProof(token), "test", CancellationToken.None);
        await Assert.ThrowsAsync<IssuanceRefusedException>(() => issuer.SignAsync(Csr(), new JoinTokenProof(token), "test", CancellationToken.None));
        await Assert.ThrowsAsync<IssuanceRefusedException>(() => issuer.SignAsync(new byte[] { 1, 2, 3 }, new JoinTokenProof("x"), "test", CancellationToken.None));
        Assert.Throws<IssuanceRefusedException>(() => issuer.Renew(Csr(), null, "test"));

        var text = await ScrapeAsync(_parts.Get<ControlPlaneMetrics>().Registry);
        Assert.Equal(1, Sample(text, "ztm_svid_issued_total", ("via", "join_token")));
        Assert.Equal(0, Sample(text, "ztm_svid_issued_total", ("via", "renewal")));
        Assert.Equal(1, Sample(text, "ztm_svid_refused_total", ("call", "sign"), ("reason", "unauthenticated"))); // the spent token
        Assert.Equal(1, Sample(text, "ztm_svid_refused_total", ("call", "sign"), ("reason", "invalid_request"))); // the CSR
        Assert.Equal(1, Sample(text, "ztm_svid_refused_total", ("call", "renew"), ("reason", "unauthenticated"))); // no SVID
        Assert.Equal(0, Sample(text, "ztm_svid_refused_total", ("call", "sign"), ("reason", "permission_denied")));
    }

    [Fact]
    public async Task A_NACK_is_counted_and_the_ACK_of_the_next_push_times_it()
    {
        var metrics = _parts.Get<ControlPlaneMetrics>();
        var service = new MeshConfigService(_parts.Get<WorkloadCaller>(), _parts.Get<ConfigDistributor>(), metrics, _time, NullLogger<MeshConfigService>.Instance);
        using var held = Issue();
        var requests = new Requests();
        var snapshots = Channel.CreateUnbounded<PreparedSnapshot>();
        using var stop = new CancellationTokenSource();
        var stream = service.Stream(requests, new Writer(snapshots.Writer), new TestCallContext("/ztm.v1.MeshConfig/Stream", held, stop.Token));

        requests.Send(new ConfigRequest());
        var first = await NextAsync(snapshots.Reader, stream);
        Assert.Equal(1, Sample(await ScrapeAsync(metrics.Registry), "ztm_connected_sidecars"));
        requests.Send(new ConfigRequest { ResponseNonce = first.Nonce, Error = "cannot apply" });
        await requests.ProcessedAsync(2).WaitAsync(Timeout);

        var text = await ScrapeAsync(metrics.Registry);
        Assert.Equal(1, Sample(text, "ztm_config_pushes_total"));
        Assert.Equal(1, Sample(text, "ztm_config_nacks_total"));
        Assert.Equal(0, Sample(text, "ztm_config_acks_total"));
        Assert.Equal(1, Sample(text, "ztm_sidecars_not_synced"));

        // A new version (a revocation concerns every sidecar), pushed after the debounce, acknowledged 42 ms later.
        _parts.Get<Revoker>().Revoke("0a1b2c3d4e5f", null, "test", "operator");
        _time.Advance(ConfigDistributor.Debounce);
        var second = await NextAsync(snapshots.Reader, stream);
        _time.Advance(TimeSpan.FromMilliseconds(42));
        requests.Send(new ConfigRequest { VersionApplied = second.Version, ResponseNonce = second.Nonce });
        requests.Send(new ConfigRequest { VersionApplied = second.Version, ResponseNonce = second.Nonce }); // a repeat is not a second ACK
        await requests.ProcessedAsync(4).WaitAsync(Timeout);

        text = await ScrapeAsync(metrics.Registry);
        Assert.Equal(2, Sample(text, "ztm_config_pushes_total"));
        Assert.Equal(1, Sample(text, "ztm_config_acks_total"));
        Assert.Equal(1, Sample(text, "ztm_config_nacks_total"));
        Assert.Equal(1, Sample(text, "ztm_config_push_to_ack_seconds_count"));
        Assert.Equal(0.042, Sample(text, "ztm_config_push_to_ack_seconds_sum"), 6);
        Assert.Equal(0, Sample(text, "ztm_config_push_to_ack_seconds_bucket", ("le", "0.025")));
        Assert.Equal(1, Sample(text, "ztm_config_push_to_ack_seconds_bucket", ("le", "0.05")));
        Assert.Equal(0, Sample(text, "ztm_sidecars_not_synced"));
        Assert.Equal(long.Parse(second.Version[1..], CultureInfo.InvariantCulture), Sample(text, "ztm_config_version"));
        Assert.Equal(1, Sample(text, "ztm_revocations"));

        await stop.CancelAsync();
        requests.Complete();
        await stream.WaitAsync(Timeout);
        Assert.Equal(0, Sample(await ScrapeAsync(metrics.Registry), "ztm_connected_sidecars"));
    }

    [Fact]
    public async Task The_metrics_port_serves_the_text_format_and_only_on_its_own_listener()
    {
        var metrics = _parts.Get<ControlPlaneMetrics>();
        metrics.InjectionRequest("injected");
        ListenOptions? metricsListener = null;
        ListenOptions? other = null;
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen => other = listen);
            metricsListener = kestrel.ListenMetrics(IPAddress.Loopback, 0);
        });
        await using var app = builder.Build();
        app.UseMetricsPort(() => metricsListener!, metrics.Registry);
        app.Run(context => context.Response.WriteAsync("app"));
        await app.StartAsync();
        using var http = new HttpClient { Timeout = Timeout };
        var port = metricsListener!.IPEndPoint!.Port;

        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        Assert.Contains("# TYPE ztm_injection_requests_total counter\n", body, StringComparison.Ordinal);
        Assert.Equal(1, Sample(body, "ztm_injection_requests_total", ("outcome", "injected")));
        Assert.Equal(0, Sample(body, "ztm_injection_requests_total", ("outcome", "refused")));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri($"http://127.0.0.1:{port}/"))).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await http.PostAsync(new Uri($"http://127.0.0.1:{port}/metrics"), null)).StatusCode);
        Assert.Equal("app", await http.GetStringAsync(new Uri($"http://127.0.0.1:{other!.IPEndPoint!.Port}/metrics")));
        await app.StopAsync();
    }

    [Theory]
    [InlineData(-1, 0, "--metrics-port must be between 0 and 65535")]
    [InlineData(15012, 15012, "--metrics-port and --port must differ (both are 15012)")]
    [InlineData(0, 0, null)]
    [InlineData(15014, 15012, null)]
    public void The_metrics_port_is_validated(int metricsPort, int port, string? error)
    {
        var options = ControlPlaneParts.Options(_dataDir);
        Assert.Equal(error, new ControlPlaneOptions
        {
            DataDir = options.DataDir,
            ListenAddress = options.ListenAddress,
            Port = port,
            MetricsPort = metricsPort,
            TrustDomain = options.TrustDomain,
            SvidTtl = options.SvidTtl,
            JoinTokenTtl = options.JoinTokenTtl,
            OperatorConfigPath = options.OperatorConfigPath,
        }.Validate());
    }

    /// <summary>The next snapshot the stream writes; the stream's own failure if it ends first.</summary>
    private static async Task<PreparedSnapshot> NextAsync(ChannelReader<PreparedSnapshot> written, Task stream)
    {
        var next = written.ReadAsync().AsTask();
        if (await Task.WhenAny(next, stream).WaitAsync(Timeout) == stream)
        {
            await stream;
            throw new InvalidOperationException("the config stream ended");
        }
        return await next;
    }

    private static byte[] Csr()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).CreateSigningRequest();
    }

    private X509Certificate2 Issue()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var leaf = _parts.Get<CertificateAuthority>().IssueSvid(Orders, new CertificateRequest("O=test", key, HashAlgorithmName.SHA256).PublicKey, TimeSpan.FromHours(1));
        return leaf.CopyWithPrivateKey(key);
    }

    /// <summary>What a scrape gets: the registry in the text format.</summary>
    private static async Task<string> ScrapeAsync(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>The sum of the samples of <paramref name="name"/> with all of <paramref name="labels"/>; fails when there is none.</summary>
    private static double Sample(string text, string name, params (string Label, string Value)[] labels)
    {
        var matching = Samples(text, name, labels).ToList();
        Assert.True(matching.Count > 0, $"no sample {name} with {string.Join(", ", labels)} in:\n{text}");
        return matching.Sum();
    }

    private static int Count(string text, string name, params (string Label, string Value)[] labels) => Samples(text, name, labels).Count();

    private static IEnumerable<double> Samples(string text, string name, (string Label, string Value)[] labels) =>
        SampleLine().Matches(text)
            .Where(m => m.Groups["name"].Value == name && labels.All(l => m.Groups["labels"].Value.Contains($"{l.Label}=\"{l.Value}\"", StringComparison.Ordinal)))
            .Select(m => double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)$", RegexOptions.Multiline)]
    private static partial Regex SampleLine();

    /// <summary>A sidecar's side of the stream: what it sends, and a signal once the server has handled a number of its messages.</summary>
    private sealed class Requests : IAsyncStreamReader<ConfigRequest>
    {
        private readonly Channel<ConfigRequest> _sent = Channel.CreateUnbounded<ConfigRequest>();
        private readonly Lock _gate = new();
        private readonly List<(int Count, TaskCompletionSource Done)> _waiters = [];
        private int _handled = -1; // the server asks for the next message once it has handled the one before

        public ConfigRequest Current { get; private set; } = null!;

        public void Send(ConfigRequest request) => _sent.Writer.TryWrite(request);

        public void Complete() => _sent.Writer.TryComplete();

        /// <summary>Completes once the server has handled <paramref name="count"/> messages (and asked for the next).</summary>
        public Task ProcessedAsync(int count)
        {
            lock (_gate)
            {
                if (_handled >= count)
                {
                    return Task.CompletedTask;
                }
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Add((count, done));
                return done.Task;
            }
        }

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            lock (_gate)
            {
                _handled++;
                foreach (var waiter in _waiters.Where(w => w.Count <= _handled).ToList())
                {
                    waiter.Done.SetResult();
                    _waiters.Remove(waiter);
                }
            }
            if (!await _sent.Reader.WaitToReadAsync(cancellationToken) || !_sent.Reader.TryRead(out var next))
            {
                return false;
            }
            Current = next;
            return true;
        }
    }

    private sealed class Writer(ChannelWriter<PreparedSnapshot> written) : IServerStreamWriter<PreparedSnapshot>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(PreparedSnapshot message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(PreparedSnapshot message, CancellationToken cancellationToken) => written.WriteAsync(message, cancellationToken).AsTask();
    }
}
