using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The edges of the listeners anyone can reach, on the real processes: connections that send nothing or trickle, refused
/// and malformed handshakes (counted and logged once, quietly where nothing was decided), and certificates whose extended
/// key usage is for the other side.
/// </summary>
[Collection(DataPlaneCollection.Name)]
public sealed class ListenerEdgeTests
{
    private const string Handshakes = "ztm_tls_handshake_failures_total";

    /// <summary>A TLS handshake record whose message is not a ClientHello (type 63): SslStream throws from inside the handshake.</summary>
    private static readonly byte[] MalformedClientHello = [0x16, 0x03, 0x01, 0x00, 0x04, 0x3f, 0x00, 0x00, 0x00];

    private readonly DataPlaneFixture _mesh;

    public ListenerEdgeTests(DataPlaneFixture fixture, ITestOutputHelper output)
    {
        fixture.AttachOutput(output);
        _mesh = fixture;
    }

    private X509Certificate2 MeshCa => Pem.LoadCertificateWithKey(
        Path.Combine(_mesh.ControlPlane.DataDir, "ca", "ca.crt"), Path.Combine(_mesh.ControlPlane.DataDir, "ca", "ca.key"));

    /// <summary>
    /// The slow test (the limits are 10 s), everything at once: a connection to the inbound port that sends nothing, and
    /// HEADERS frames trickled a byte every 500 ms after the handshake to the inbound port (mTLS) and to the control plane,
    /// are each closed at about 10 s (before: never, 131 s, 131 s). Meanwhile an idle sidecar-to-sidecar style connection
    /// (mTLS, HTTP/2, one request, then quiet for as long) is kept and serves again.
    /// </summary>
    [Fact]
    public async Task Silent_and_trickling_connections_are_closed_at_10_s_and_an_idle_one_is_kept()
    {
        using var svid = await WorkloadCredential.Issue(_mesh.ControlPlane, "shop", "frontend");
        var connections = 0;
        using var idle = new HttpClient(InboundHandler(svid, () => Interlocked.Increment(ref connections)))
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Mesh.Timeout,
        };
        var inbound = new Uri($"https://{_mesh.OrdersSidecar.Inbound}/idle");
        using (await idle.GetAsync(inbound))
        {
        }

        var silent = TimeUntilClosedAsync(_mesh.OrdersSidecar.Inbound, client: null);
        var inboundTrickle = TimeUntilClosedAsync(_mesh.OrdersSidecar.Inbound, (socket, ct) =>
            TrickleHeadersAsync(Http2OverMtlsAsync(socket, svid, "orders.shop", ServerIs(DataPlaneFixture.OrdersId), ct), ct));
        var controlPlaneTrickle = TimeUntilClosedAsync(new IPEndPoint(IPAddress.Loopback, _mesh.ControlPlane.Address.Port), (socket, ct) =>
            TrickleHeadersAsync(Http2OverMtlsAsync(socket, null, "controlplane", ServerIs(ControlPlaneChannel.ServerId("cluster.local").Value), ct), ct));

        var closedAfter = await Task.WhenAll(silent, inboundTrickle, controlPlaneTrickle);

        Assert.All(closedAfter, after => Assert.InRange(after, TimeSpan.FromSeconds(9), TimeSpan.FromSeconds(25)));
        using (var again = await idle.GetAsync(inbound))
        {
            Assert.NotEqual(HttpStatusCode.BadGateway, again.StatusCode);
        }
        Assert.Equal(1, connections);
        await _mesh.OrdersSidecar.Process.WaitForLineAsync(l => l.Contains("reason=NothingSent", StringComparison.Ordinal), "the silent connection's line");
        await _mesh.OrdersSidecar.Process.WaitForLineAsync(l => l.Contains("reason=FrameTimeout", StringComparison.Ordinal), "the trickled frame's line");
    }

    [Fact]
    public async Task A_refused_handshake_is_logged_with_the_peer_and_the_reason()
    {
        using var foreignCa = TestCertificates.CreateCa("foreign mesh");
        using var svid = TestCertificates.CreateSvid(foreignCa, DataPlaneFixture.FrontendId, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        var mark = _mesh.OrdersSidecar.Process.LineCount;

        var local = await RefusedHandshakeAsync(svid);

        var line = await _mesh.OrdersSidecar.Process.WaitForLineAsync(l => l.Contains("inbound connection refused", StringComparison.Ordinal), "the refusal", after: mark);
        Assert.Contains($"peer={local}", line, StringComparison.Ordinal);
        Assert.Contains("reason=UntrustedChain", line, StringComparison.Ordinal);
        Assert.Contains(": certificate does not chain to the trust bundle of 'cluster.local'", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_mesh_signed_caller_certificate_for_server_auth_only_is_refused_at_the_inbound_handshake()
    {
        using var ca = MeshCa;
        using var serverAuthOnly = Leaf(ca, DataPlaneFixture.FrontendId, new Oid("1.3.6.1.5.5.7.3.1"));
        var before = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        var mark = _mesh.OrdersSidecar.Process.LineCount;

        await RefusedHandshakeAsync(serverAuthOnly);

        var after = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        (string, string)[] labels = [("direction", "inbound"), ("reason", "BadExtendedKeyUsage")];
        Assert.Equal(Mesh.Sample(before, Handshakes, labels) + 1, Mesh.Sample(after, Handshakes, labels));
        await _mesh.OrdersSidecar.Process.WaitForLineAsync(l => l.Contains("does not allow client authentication (clientAuth)", StringComparison.Ordinal), "the refusal", after: mark);
    }

    [Fact]
    public async Task A_malformed_client_hello_is_counted_and_logged_quietly_by_the_sidecar_and_the_control_plane()
    {
        var before = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        var sidecarMark = _mesh.OrdersSidecar.Process.LineCount;
        var controlPlaneMark = _mesh.ControlPlane.Process.LineCount;

        await EchoClient.SendRawAsync(_mesh.OrdersSidecar.Inbound, MalformedClientHello, Mesh.Timeout);
        await EchoClient.SendRawAsync(new IPEndPoint(IPAddress.Loopback, _mesh.ControlPlane.Address.Port), MalformedClientHello, Mesh.Timeout);

        await _mesh.OrdersSidecar.Process.WaitForLineAsync(l => l.Contains("info:", StringComparison.Ordinal) && l.Contains("reason=MalformedHandshake", StringComparison.Ordinal), "the sidecar's quiet line", after: sidecarMark);
        await _mesh.ControlPlane.Process.WaitForLineAsync(l => l.Contains("info:", StringComparison.Ordinal) && l.Contains("reason=MalformedHandshake", StringComparison.Ordinal), "the control plane's quiet line", after: controlPlaneMark);
        var after = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        (string, string)[] labels = [("direction", "inbound"), ("reason", "MalformedHandshake")];
        Assert.Equal(Mesh.Sample(before, Handshakes, labels) + 1, Mesh.Sample(after, Handshakes, labels));
        Assert.DoesNotContain(_mesh.OrdersSidecar.Process.Lines.Skip(sidecarMark), l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("   at ", StringComparison.Ordinal));
        Assert.DoesNotContain(_mesh.ControlPlane.Process.Lines.Skip(controlPlaneMark), l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("   at ", StringComparison.Ordinal));
    }

    // ---- helpers ----

    private static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }; // not dual-mode: the address the server sees
        await socket.ConnectAsync(endPoint);
        return socket;
    }

    /// <summary>Connects, runs <paramref name="client"/> (or only reads), and returns how long after connecting the server closed the connection.</summary>
    private static async Task<TimeSpan> TimeUntilClosedAsync(IPEndPoint endPoint, Func<Socket, CancellationToken, Task>? client)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(40));
        using var socket = await ConnectAsync(endPoint);
        var started = Stopwatch.GetTimestamp();
        try
        {
            await (client is null ? EchoClient.ReceiveToEnd(socket, timeout.Token) : client(socket, timeout.Token));
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException or OperationCanceledException)
        {
            // closed by the server while the client was still sending, or not at all (then the time says so)
        }
        return Stopwatch.GetElapsedTime(started);
    }

    /// <summary>TLS with ALPN h2 (presenting <paramref name="clientCertificate"/> if given), the HTTP/2 preface and SETTINGS: a stream ready for frames.</summary>
    private static async Task<SslStream> Http2OverMtlsAsync(Socket socket, X509Certificate2? clientCertificate, string serverName, RemoteCertificateValidationCallback server, CancellationToken cancellation)
    {
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName,
            ApplicationProtocols = [SslApplicationProtocol.Http2],
            ClientCertificates = clientCertificate is null ? null : [clientCertificate],
            LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate!,
            RemoteCertificateValidationCallback = server,
        }, cancellation);
        await tls.WriteAsync((byte[])[.. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8, 0, 0, 0, 4, 0, 0, 0, 0, 0], cancellation);
        return tls;
    }

    /// <summary>A HEADERS frame a byte every 500 ms, reading meanwhile, until the server closes.</summary>
    private static async Task TrickleHeadersAsync(Task<SslStream> opening, CancellationToken cancellation)
    {
        await using var tls = await opening;
        // Longer than the test waits (109 bytes at 2 a second): only the server can end it.
        byte[] frame = [0, 0, 100, 1, 4, 0, 0, 0, 1, .. new byte[100]];
        var reading = DrainAsync(tls, cancellation);
        using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        for (var i = 0; i < frame.Length && !reading.IsCompleted; i++)
        {
            await tls.WriteAsync(frame.AsMemory(i, 1), cancellation);
            await Task.WhenAny(reading, pace.WaitForNextTickAsync(cancellation).AsTask());
        }
        await reading;
    }

    private static async Task DrainAsync(Stream stream, CancellationToken cancellation)
    {
        var buffer = new byte[4096];
        while (await stream.ReadAsync(buffer, cancellation) > 0)
        {
        }
    }

    private RemoteCertificateValidationCallback ServerIs(string spiffeId)
    {
        var bundle = _mesh.ControlPlane.Bundle;
        return (_, certificate, _, _) => certificate is X509Certificate2 leaf && SvidVerifier.Verify(leaf, null, bundle, DateTimeOffset.UtcNow).Id.Value == spiffeId;
    }

    private SocketsHttpHandler InboundHandler(X509Certificate2 clientCertificate, Action connected) => new()
    {
        ConnectCallback = async (_, cancellation) =>
        {
            connected();
            var socket = await ConnectAsync(_mesh.OrdersSidecar.Inbound);
            return new NetworkStream(socket, ownsSocket: true);
        },
        SslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = "orders.shop",
            ClientCertificates = [clientCertificate],
            LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate,
            RemoteCertificateValidationCallback = ServerIs(DataPlaneFixture.OrdersId),
        },
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
    };

    /// <summary>An mTLS handshake to the orders sidecar with <paramref name="clientCertificate"/> that the sidecar refuses; returns the client's address.</summary>
    private async Task<EndPoint> RefusedHandshakeAsync(X509Certificate2 clientCertificate)
    {
        using var socket = await ConnectAsync(_mesh.OrdersSidecar.Inbound);
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        try
        {
            await using var tls = await Http2OverMtlsAsync(socket, clientCertificate, "orders.shop", ServerIs(DataPlaneFixture.OrdersId), timeout.Token);
            // TLS 1.3: the refusal arrives after the client's side of the handshake, on the first read.
            Assert.Equal(0, await tls.ReadAsync(new byte[16], timeout.Token));
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
        }
        return socket.LocalEndPoint!;
    }

    /// <summary>An SVID for <paramref name="spiffeId"/> signed by <paramref name="issuer"/> with only <paramref name="usage"/> as its extended key usage.</summary>
    private static X509Certificate2 Leaf(X509Certificate2 issuer, string spiffeId, Oid usage)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([usage], false));
        request.CertificateExtensions.Add(SubjectAltNames.ForUri(spiffeId));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.Create(issuer.SubjectName, X509SignatureGenerator.CreateForECDsa(issuer.GetECDsaPrivateKey()!), now.AddMinutes(-1), now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        return certificate.CopyWithPrivateKey(key);
    }
}
