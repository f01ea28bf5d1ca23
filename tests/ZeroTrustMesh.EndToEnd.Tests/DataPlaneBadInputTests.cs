using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// Bad input to the data plane: each is refused without a crash or a hang, is visible in a metric (or a log line),
/// and the sidecars go on serving good traffic afterwards.
/// </summary>
[Collection(DataPlaneCollection.Name)]
public sealed class DataPlaneBadInputTests
{
    private const string Frontend = DataPlaneFixture.FrontendId;
    private const string Handshakes = "ztm_tls_handshake_failures_total";
    private static readonly OidCollection ServerAndClientAuth = [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")];

    private readonly DataPlaneFixture _mesh;

    public DataPlaneBadInputTests(DataPlaneFixture fixture, ITestOutputHelper output)
    {
        fixture.AttachOutput(output);
        _mesh = fixture;
    }

    private X509Certificate2 MeshCa => Pem.LoadCertificateWithKey(
        Path.Combine(_mesh.ControlPlane.DataDir, "ca", "ca.crt"), Path.Combine(_mesh.ControlPlane.DataDir, "ca", "ca.key"));

    // ---- The inbound listener: STRICT mTLS ----

    [Fact]
    public async Task A_valid_mesh_certificate_is_accepted_by_the_inbound_listener()
    {
        // The control for the refusals below: the same client, with an SVID the control plane issued.
        using var svid = await WorkloadCredential.Issue(_mesh.ControlPlane, "shop", "frontend");

        Assert.True(await InboundServesHttp2Async(svid));
    }

    [Fact]
    public async Task No_client_certificate_is_refused_at_the_handshake_and_counted()
    {
        await AssertInboundRefusesAsync(null, "NoCertificate");
    }

    [Fact]
    public async Task A_certificate_from_a_foreign_ca_is_refused_and_counted()
    {
        using var foreignCa = TestCertificates.CreateCa("foreign mesh");
        using var svid = TestCertificates.CreateSvid(foreignCa, Frontend, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));

        await AssertInboundRefusesAsync(svid, "UntrustedChain");
    }

    [Fact]
    public async Task An_expired_certificate_signed_by_the_mesh_ca_is_refused_and_counted()
    {
        using var ca = MeshCa;
        using var svid = TestCertificates.CreateSvid(ca, Frontend, DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(-1));

        await AssertInboundRefusesAsync(svid, "Expired");
    }

    [Fact]
    public async Task A_leaf_with_cA_true_signed_by_the_mesh_ca_is_refused_and_counted()
    {
        using var ca = MeshCa;
        using var svid = Leaf(ca, r =>
        {
            r.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            r.CertificateExtensions.Add(SubjectAltNames.ForUri(Frontend));
        });

        await AssertInboundRefusesAsync(svid, "NotALeaf");
    }

    [Fact]
    public async Task A_leaf_with_two_uri_sans_signed_by_the_mesh_ca_is_refused_and_counted()
    {
        using var ca = MeshCa;
        using var svid = Leaf(ca, r =>
        {
            r.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            var names = new SubjectAlternativeNameBuilder();
            names.AddUri(new Uri(Frontend));
            names.AddUri(new Uri("spiffe://cluster.local/ns/shop/sa/admin"));
            r.CertificateExtensions.Add(names.Build());
        });

        await AssertInboundRefusesAsync(svid, "BadSubjectAltName");
    }

    [Fact]
    public async Task Plaintext_http_to_the_inbound_port_gets_no_response_and_the_connection_is_closed()
    {
        var answer = await EchoClient.SendRawAsync(_mesh.OrdersSidecar.Inbound, Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: orders\r\nx-ztm-client-identity: spiffe://cluster.local/ns/shop/sa/admin\r\n\r\n"), Mesh.Timeout);

        Assert.Empty(answer);
        await AssertMeshStillServesAsync();
    }

    [Fact]
    public async Task Plaintext_and_garbage_to_the_inbound_port_are_counted_as_handshake_failures()
    {
        var before = await Mesh.MetricsAsync(_mesh.OrdersSidecar);

        await EchoClient.SendRawAsync(_mesh.OrdersSidecar.Inbound, Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: orders\r\n\r\n"), Mesh.Timeout);
        var garbage = RandomNumberGenerator.GetBytes(64);
        garbage[0] = 0x00; // never a TLS record type
        await EchoClient.SendRawAsync(_mesh.OrdersSidecar.Inbound, garbage, Mesh.Timeout);

        var after = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        Assert.True(Mesh.Sample(after, Handshakes, ("direction", "inbound")) >= Mesh.Sample(before, Handshakes, ("direction", "inbound")) + 2,
            $"the refused handshakes were not counted:\n{after}");
    }

    [Fact]
    public async Task Garbage_instead_of_a_client_hello_gets_no_response_and_the_connection_is_closed()
    {
        var garbage = new byte[4096];
        new Random(7).NextBytes(garbage);
        garbage[0] = 0x00; // not a TLS record type: refused at once (a record header promising more would wait for the 10 s handshake timeout)

        var answer = await EchoClient.SendRawAsync(_mesh.OrdersSidecar.Inbound, garbage, Mesh.Timeout);

        // At most a TLS alert record (content type 21), never application data.
        Assert.True(answer.Length == 0 || answer[0] == 21, $"the inbound port answered {answer.Length} bytes: {Convert.ToHexString(answer.AsSpan(0, Math.Min(answer.Length, 16)))}");
        await AssertMeshStillServesAsync();
    }

    // ---- The outbound path: the destination's identity ----

    [Fact]
    public async Task A_destination_presenting_another_identity_than_registered_is_refused_by_the_caller()
    {
        // A workload may register only its own service, but it names its inbound address itself. "payments" registers
        // the orders sidecar's address (a stale or hijacked address): the frontend expects payments' identity there, the
        // server presents orders', and the handshake is refused before any byte of the request leaves the frontend.
        using var payments = await WorkloadCredential.Issue(_mesh.ControlPlane, "shop", "payments");
        using (var channel = _mesh.ControlPlane.Channel(payments))
        {
            var endpoint = new ServiceEndpoint { InboundAddress = _mesh.OrdersSidecar.Inbound.ToString() };
            endpoint.HttpPorts.Add((uint)_mesh.Orders.HttpPort);
            await new Proto.V1.Registry.RegistryClient(channel).RegisterAsync(new RegisterRequest { Endpoint = endpoint });
        }
        var before = await Mesh.MetricsAsync(_mesh.Frontend);
        var ordersMark = _mesh.Orders.Process.LineCount;

        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };
        using var response = await http.PostAsync("http://payments.shop/charge", new StringContent("{\"amount\":100}"));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var after = await Mesh.MetricsAsync(_mesh.Frontend);
        (string, string)[] labels = [("direction", "outbound"), ("reason", "UnexpectedIdentity")];
        Assert.True(Mesh.Sample(after, Handshakes, labels) > Mesh.Sample(before, Handshakes, labels), after);
        Assert.Equal(ordersMark, _mesh.Orders.Process.LineCount);
        await AssertMeshStillServesAsync();
    }

    // ---- The outbound listener: what the local app sends ----

    [Fact]
    public async Task Content_length_with_transfer_encoding_is_a_400_and_never_forwarded()
    {
        var mark = _mesh.OrdersSidecar.Process.LineCount;

        var answer = Encoding.ASCII.GetString(await EchoClient.SendRawAsync(_mesh.Frontend.Outbound, Encoding.ASCII.GetBytes(
            "POST /smuggled HTTP/1.1\r\nHost: orders\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: orders\r\n\r\n"), Mesh.Timeout));

        Assert.StartsWith("HTTP/1.1 400 ", answer, StringComparison.Ordinal);
        // One response, then the connection closes: the bytes after the body are not taken for a second request.
        Assert.Single(answer.Split("HTTP/1.1 ", StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain(_mesh.OrdersSidecar.Process.Lines.Skip(mark), l => l.Contains("/smuggled", StringComparison.Ordinal) || l.Contains("/second", StringComparison.Ordinal));
        await AssertMeshStillServesAsync();
    }

    [Fact]
    public async Task Headers_over_32_KiB_are_a_431()
    {
        var answer = Encoding.ASCII.GetString(await EchoClient.SendRawAsync(_mesh.Frontend.Outbound, Encoding.ASCII.GetBytes(
            $"GET /big HTTP/1.1\r\nHost: orders\r\nx-big: {new string('a', 33 * 1024)}\r\n\r\n"), Mesh.Timeout));

        Assert.StartsWith("HTTP/1.1 431 ", answer, StringComparison.Ordinal);
        await AssertMeshStillServesAsync();
    }

    [Fact]
    public async Task Connect_to_a_port_the_service_does_not_declare_is_a_403()
    {
        var before = await Mesh.MetricsAsync(_mesh.Frontend);
        using var socket = await ConnectOutboundAsync();
        using var timeout = new CancellationTokenSource(Mesh.Timeout);

        var head = await DataPlaneTests.ConnectAsync(socket, $"orders.shop:{_mesh.Orders.HttpPort}", timeout.Token);

        Assert.StartsWith("HTTP/1.1 403 ", head, StringComparison.Ordinal);
        Assert.Contains("not a declared TCP port", Encoding.ASCII.GetString(await EchoClient.ReceiveToEnd(socket, timeout.Token)), StringComparison.Ordinal);
        var after = await Mesh.MetricsAsync(_mesh.Frontend);
        (string, string)[] labels = [("direction", "outbound"), ("reason", "tcp port not declared")];
        Assert.Equal(Mesh.Sample(before, "ztm_rejected_requests_total", labels) + 1, Mesh.Sample(after, "ztm_rejected_requests_total", labels));
    }

    [Fact]
    public async Task Connect_to_an_unknown_service_is_a_503()
    {
        var before = await Mesh.MetricsAsync(_mesh.Frontend);
        using var socket = await ConnectOutboundAsync();
        using var timeout = new CancellationTokenSource(Mesh.Timeout);

        var head = await DataPlaneTests.ConnectAsync(socket, $"nosuchservice.shop:{_mesh.Orders.TcpPort}", timeout.Token);

        Assert.StartsWith("HTTP/1.1 503 ", head, StringComparison.Ordinal);
        var after = await Mesh.MetricsAsync(_mesh.Frontend);
        (string, string)[] labels = [("direction", "outbound"), ("reason", "unknown service")];
        Assert.Equal(Mesh.Sample(before, "ztm_rejected_requests_total", labels) + 1, Mesh.Sample(after, "ztm_rejected_requests_total", labels));
    }

    [Fact]
    public async Task An_http_request_for_an_unknown_service_is_a_503_and_for_an_undeclared_port_a_404()
    {
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };

        using (var response = await http.GetAsync("http://nosuchservice/"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }
        using (var response = await http.GetAsync($"http://orders:{_mesh.Orders.TcpPort}/"))
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }
    }

    /// <summary>The one slow test (the timeouts are 10 s): two slow clients at once, both cut off.</summary>
    [Fact]
    public async Task Slow_clients_are_cut_off_after_the_10_second_header_timeout()
    {
        var started = Stopwatch.GetTimestamp();
        // One sends HTTP/1.1 headers a byte every 500 ms (Kestrel's header timeout); one stops inside the
        // HTTP/2 preface, before the sidecar knows which protocol it is.
        var headers = SlowClientAsync(Encoding.ASCII.GetBytes("GET /slow HTTP/1.1\r\nHost: orders\r\nx-padding: " + new string('p', 100) + "\r\n\r\n"));
        var preface = SlowClientAsync("PRI * HTTP/2.0\r\n"u8.ToArray(), stopAfter: 5);

        var results = await Task.WhenAll(headers, preface);

        foreach (var (answer, closedAfter) in results)
        {
            Assert.InRange(closedAfter, TimeSpan.FromSeconds(9), TimeSpan.FromSeconds(25));
            Assert.True(answer.Length == 0 || Encoding.ASCII.GetString(answer).StartsWith("HTTP/1.1 408 ", StringComparison.Ordinal), Encoding.ASCII.GetString(answer));
        }
        Assert.True(Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(30));
        await AssertMeshStillServesAsync();
    }

    // ---- helpers ----

    private async Task AssertInboundRefusesAsync(X509Certificate2? clientCertificate, string reason)
    {
        var before = await Mesh.MetricsAsync(_mesh.OrdersSidecar);

        Assert.False(await InboundServesHttp2Async(clientCertificate), "the inbound listener served HTTP/2 to a bad client certificate");

        var after = await Mesh.MetricsAsync(_mesh.OrdersSidecar);
        (string, string)[] labels = [("direction", "inbound"), ("reason", reason)];
        Assert.True(Mesh.Sample(after, Handshakes, labels) == Mesh.Sample(before, Handshakes, labels) + 1, after);
        await AssertMeshStillServesAsync();
    }

    /// <summary>mTLS to the orders sidecar's inbound port with <paramref name="clientCertificate"/>, then the HTTP/2 preface: does a SETTINGS frame come back?</summary>
    private async Task<bool> InboundServesHttp2Async(X509Certificate2? clientCertificate)
    {
        var bundle = _mesh.ControlPlane.Bundle;
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(_mesh.OrdersSidecar.Inbound, timeout.Token);
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "orders.shop",
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                ClientCertificates = clientCertificate is null ? null : [clientCertificate],
                LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate!,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is X509Certificate2 server
                    && SvidVerifier.Verify(server, null, bundle, DateTimeOffset.UtcNow) is { IsValid: true } verified && verified.Id.Value == DataPlaneFixture.OrdersId,
            }, timeout.Token);
            // TLS 1.3: the client's handshake ends before the server has judged the client's certificate; a refusal
            // arrives as an alert on the first read.
            await tls.WriteAsync("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray().Concat(new byte[] { 0, 0, 0, 4, 0, 0, 0, 0, 0 }).ToArray(), timeout.Token);
            var frame = new byte[9];
            var read = await tls.ReadAsync(frame, timeout.Token);
            return read > 0;
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return false;
        }
    }

    /// <summary>Sends <paramref name="bytes"/> one every 500 ms (the first <paramref name="stopAfter"/>, then nothing); returns what came back and when the sidecar closed.</summary>
    private async Task<(byte[] Answer, TimeSpan ClosedAfter)> SlowClientAsync(byte[] bytes, int? stopAfter = null)
    {
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var socket = await ConnectOutboundAsync();
        var started = Stopwatch.GetTimestamp();
        var receiving = EchoClient.ReceiveToEnd(socket, timeout.Token);
        using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        for (var i = 0; i < Math.Min(bytes.Length, stopAfter ?? int.MaxValue) && !receiving.IsCompleted; i++)
        {
            try
            {
                await socket.SendAsync(bytes.AsMemory(i, 1), SocketFlags.None, timeout.Token);
            }
            catch (SocketException)
            {
                break; // closed by the sidecar
            }
            await Task.WhenAny(receiving, pace.WaitForNextTickAsync(timeout.Token).AsTask());
        }
        byte[] answer;
        try
        {
            answer = await receiving;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            answer = [];
        }
        return (answer, Stopwatch.GetElapsedTime(started));
    }

    private async Task<Socket> ConnectOutboundAsync()
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(_mesh.Frontend.Outbound);
        return socket;
    }

    /// <summary>After a bad input, a good request still goes through both sidecars.</summary>
    private async Task AssertMeshStillServesAsync()
    {
        using var http = new HttpClient(Mesh.HostAddressed(_mesh.Frontend)) { Timeout = Mesh.Timeout };
        using var response = await http.GetAsync($"http://orders:{_mesh.Orders.HttpPort}/still-serving");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Frontend, (await EchoClient.ReadEcho(response)).GetProperty("caller").GetString());
    }

    /// <summary>A leaf for the mesh (digitalSignature, server+client auth) signed by <paramref name="issuer"/>, with the extensions <paramref name="configure"/> adds.</summary>
    private static X509Certificate2 Leaf(X509Certificate2 issuer, Action<CertificateRequest> configure)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(ServerAndClientAuth, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        configure(request);
        var signer = X509SignatureGenerator.CreateForECDsa(issuer.GetECDsaPrivateKey()!);
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.Create(issuer.SubjectName, signer, now.AddMinutes(-1), now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        return certificate.CopyWithPrivateKey(key);
    }
}
