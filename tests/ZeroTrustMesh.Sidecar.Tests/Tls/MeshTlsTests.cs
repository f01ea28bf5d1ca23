using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Sidecar.Identity;
using ZeroTrustMesh.Sidecar.Registry;
using ZeroTrustMesh.Sidecar.Telemetry;
using ZeroTrustMesh.Sidecar.Tls;
using ProtoBundle = ZeroTrustMesh.Proto.V1.TrustBundle;

namespace ZeroTrustMesh.Sidecar.Tests.Tls;

/// <summary>
/// The sidecar's mTLS on real handshakes (Kestrel and SslStream on 127.0.0.1:0) with certificates from two test CAs:
/// the trust bundle it follows, and the extended key usage of each side. The sidecar holds an SVID of CA 1; peers
/// present SVIDs of CA 1 or CA 2.
/// </summary>
public sealed class MeshTlsTests : IAsyncLifetime
{
    private const string Orders = "spiffe://cluster.local/ns/shop/sa/orders";
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Payments = "spiffe://cluster.local/ns/shop/sa/payments";
    private static readonly TimeSpan Signal = TimeSpan.FromSeconds(30);

    private readonly TestCa _ca1 = new("CA 1");
    private readonly TestCa _ca2 = new("CA 2");
    private readonly ListLogger<RefusalLog> _log = new();
    private readonly IdentityState _state;
    private readonly SidecarMetrics _metrics;
    private readonly RefusalLog _refusals;
    private WebApplication _inbound = null!;

    public MeshTlsTests()
    {
        _state = new IdentityState(TimeProvider.System, new TrustBundle("cluster.local", [_ca1.Certificate], 1));
        _state.Set(new WorkloadIdentity(SpiffeId.Parse(Orders), _ca1.Svid(Orders), []));
        _metrics = new SidecarMetrics(_state);
        _refusals = new RefusalLog(_metrics, TimeProvider.System, _log);
    }

    private Uri InboundAddress => new(_inbound.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());

    /// <summary>The inbound listener as the sidecar builds it: HTTP/2 over mTLS, the options from <see cref="MeshTls.ServerOptions"/> at each handshake.</summary>
    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listen.UseHttps(new TlsHandshakeCallbackOptions
            {
                HandshakeTimeout = TimeSpan.FromSeconds(10),
                OnConnection = context => ValueTask.FromResult(MeshTls.ServerOptions(_state, _refusals, context.Connection)),
            });
        }));
        _inbound = builder.Build();
        _inbound.Run(context => context.Response.WriteAsync(context.Features.Get<PeerIdentityFeature>()?.Id.Value ?? "no peer"));
        await _inbound.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _inbound.DisposeAsync();
        _ca1.Dispose();
        _ca2.Dispose();
    }

    // ---- The trust bundle it follows ----

    [Fact]
    public async Task Inbound_a_caller_of_a_second_root_is_refused_until_the_bundle_holds_that_root_then_accepted_on_the_next_handshake()
    {
        using var caller = _ca2.Svid(Frontend);

        Assert.Null(await CallInboundAsync(caller));
        Assert.Contains(_log.Lines, l => l.Contains("inbound connection refused peer=127.0.0.1:", StringComparison.Ordinal) && l.Contains("reason=UntrustedChain", StringComparison.Ordinal));

        // What a config snapshot carries during a CA rotation: both roots, a higher sequence.
        Assert.True(_state.ApplyBundle(Bundle(2, _ca1, _ca2), "v7"));

        Assert.Equal(Frontend, await CallInboundAsync(caller));
        using var oldRootCaller = _ca1.Svid(Frontend);
        Assert.Equal(Frontend, await CallInboundAsync(oldRootCaller));
    }

    [Fact]
    public async Task Outbound_a_destination_of_a_second_root_is_refused_until_the_bundle_holds_that_root()
    {
        using var server = _ca2.Svid(Payments);
        await using var destination = await TlsServer.StartAsync(server);
        var payments = new Destination("payments.shop", SpiffeId.Parse(Payments), destination.EndPoint, [8080], []);

        Assert.False(await HandshakeOutboundAsync(payments));
        Assert.Contains(_log.Lines, l => l.Contains("outbound connection refused peer=" + destination.EndPoint, StringComparison.Ordinal) && l.Contains("reason=UntrustedChain", StringComparison.Ordinal));

        _state.ApplyBundle(Bundle(2, _ca1, _ca2), "v7");

        Assert.True(await HandshakeOutboundAsync(payments));
    }

    [Fact]
    public async Task A_root_dropped_from_the_bundle_is_refused_from_the_next_handshake()
    {
        using var caller = _ca1.Svid(Frontend);
        _state.ApplyBundle(Bundle(2, _ca1, _ca2), "v2");
        Assert.Equal(Frontend, await CallInboundAsync(caller));

        _state.ApplyBundle(Bundle(3, _ca2), "v3");

        Assert.Null(await CallInboundAsync(caller));
    }

    [Fact]
    public void An_older_or_equal_bundle_is_ignored_and_another_trust_domain_or_no_root_is_refused()
    {
        Assert.True(_state.ApplyBundle(Bundle(5, _ca1, _ca2), "v5"));

        Assert.False(_state.ApplyBundle(Bundle(4, _ca1), "v4"));
        Assert.False(_state.ApplyBundle(Bundle(5, _ca1), "v5 again"));
        Assert.False(_state.ApplyBundle((ProtoBundle?)null, "without a bundle"));
        var other = Bundle(6, _ca1);
        other.TrustDomain = "example.org";
        Assert.Contains("is for trust domain 'example.org'; this sidecar is in 'cluster.local'",
            Assert.Throws<FormatException>(() => _state.ApplyBundle(other, "v6")).Message, StringComparison.Ordinal);
        Assert.Contains("has no root certificate",
            Assert.Throws<FormatException>(() => _state.ApplyBundle(new ProtoBundle { TrustDomain = "cluster.local", Sequence = 7 }, "v7")).Message, StringComparison.Ordinal);
        var garbage = new ProtoBundle { TrustDomain = "cluster.local", Sequence = 8 };
        garbage.Roots.Add(ByteString.CopyFromUtf8("not a certificate"));
        Assert.Throws<FormatException>(() => _state.ApplyBundle(garbage, "v8"));

        Assert.Equal(5ul, _state.Bundle!.Sequence);
        Assert.Equal(2, _state.Bundle.Roots.Count);
    }

    // ---- Extended key usage: what each side's certificate is for ----

    [Fact]
    public async Task Inbound_a_caller_whose_certificate_is_for_server_auth_only_is_refused()
    {
        using var serverOnly = _ca1.Svid(Frontend, TestCa.ServerAuth);
        using var clientOnly = _ca1.Svid(Frontend, TestCa.ClientAuth);

        Assert.Null(await CallInboundAsync(serverOnly));
        Assert.Contains(_log.Lines, l => l.Contains("reason=BadExtendedKeyUsage", StringComparison.Ordinal) && l.Contains("does not allow client authentication", StringComparison.Ordinal));
        Assert.Equal(Frontend, await CallInboundAsync(clientOnly));
    }

    [Fact]
    public async Task Outbound_a_destination_whose_certificate_is_for_client_auth_only_is_refused()
    {
        using var clientOnly = _ca1.Svid(Payments, TestCa.ClientAuth);
        await using var destination = await TlsServer.StartAsync(clientOnly);

        Assert.False(await HandshakeOutboundAsync(new Destination("payments.shop", SpiffeId.Parse(Payments), destination.EndPoint, [8080], [])));
        Assert.Contains(_log.Lines, l => l.Contains("reason=BadExtendedKeyUsage", StringComparison.Ordinal) && l.Contains("does not allow server authentication", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Refusals_of_one_reason_are_logged_at_most_ten_a_minute_and_the_rest_counted()
    {
        using var caller = _ca2.Svid(Frontend);

        for (var i = 0; i < 12; i++)
        {
            Assert.Null(await CallInboundAsync(caller));
        }

        Assert.Equal(RefusalLog.LinesPerMinute, _log.Lines.Count(l => l.Contains("reason=UntrustedChain", StringComparison.Ordinal)));
        var metrics = new MemoryStream();
        await _metrics.Registry.CollectAndExportAsTextAsync(metrics);
        Assert.Contains("ztm_tls_handshake_failures_total{direction=\"inbound\",reason=\"UntrustedChain\"} 12", System.Text.Encoding.UTF8.GetString(metrics.ToArray()), StringComparison.Ordinal);
    }

    // ---- helpers ----

    private static ProtoBundle Bundle(ulong sequence, params TestCa[] roots)
    {
        var bundle = new ProtoBundle { TrustDomain = "cluster.local", Sequence = sequence };
        bundle.Roots.AddRange(roots.Select(r => ByteString.CopyFrom(r.Certificate.RawData)));
        return bundle;
    }

    /// <summary>An HTTP/2 request over a new mTLS connection with <paramref name="clientCertificate"/>: the caller the server saw, or null when refused.</summary>
    private async Task<string?> CallInboundAsync(X509Certificate2 clientCertificate)
    {
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = [clientCertificate],
                LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate,
                RemoteCertificateValidationCallback = (_, server, _, _) => server is X509Certificate2 leaf
                    && SvidVerifier.Verify(leaf, null, new TrustBundle("cluster.local", [_ca1.Certificate], 1), DateTimeOffset.UtcNow).Id.Value == Orders,
            },
        };
        using var http = new HttpClient(handler) { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact, Timeout = Signal };
        try
        {
            return await http.GetStringAsync(new Uri($"https://127.0.0.1:{InboundAddress.Port}/"));
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>The outbound handshake as the sidecar makes it to <paramref name="destination"/>: whether it completed.</summary>
    private async Task<bool> HandshakeOutboundAsync(Destination destination)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(destination.Inbound);
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        try
        {
            using var timeout = new CancellationTokenSource(Signal);
            await tls.AuthenticateAsClientAsync(MeshTls.ClientOptions(_state, _refusals, destination, SslApplicationProtocol.Http2), timeout.Token);
            return true;
        }
        catch (AuthenticationException)
        {
            return false;
        }
    }

    /// <summary>A TLS server on 127.0.0.1:0 presenting <paramref name="certificate"/> to whoever connects; asks for no client certificate.</summary>
    private sealed class TlsServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private Task _accepting = Task.CompletedTask;

        public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

        public static Task<TlsServer> StartAsync(X509Certificate2 certificate)
        {
            var server = new TlsServer();
            server._listener.Start();
            server._accepting = server.AcceptAsync(certificate);
            return Task.FromResult(server);
        }

        private async Task AcceptAsync(X509Certificate2 certificate)
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptSocketAsync(_stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                _ = Task.Run(async () =>
                {
                    using (socket)
                    await using (var tls = new SslStream(new NetworkStream(socket, ownsSocket: false)))
                    {
                        try
                        {
                            await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                            {
                                ServerCertificate = certificate,
                                ApplicationProtocols = [SslApplicationProtocol.Http2],
                            }, _stop.Token);
                            _ = await tls.ReadAsync(new byte[1], _stop.Token); // until the client goes
                        }
                        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException)
                        {
                        }
                    }
                });
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            _stop.Dispose();
        }
    }
}

/// <summary>A logger that keeps what it was given, formatted, for tests to look at.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines)
        {
            _lines.Add($"{logLevel}: {formatter(state, exception)}");
        }
    }
}
