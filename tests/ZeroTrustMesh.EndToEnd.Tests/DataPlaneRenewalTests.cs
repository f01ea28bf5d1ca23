using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;
using TrustBundle = ZeroTrustMesh.Identity.TrustBundle;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>Certificates renewed (one-minute SVIDs) under running traffic: nothing established is dropped, nothing fails.</summary>
public sealed class DataPlaneRenewalTests(ITestOutputHelper output) : IAsyncLifetime
{
    // A one-minute SVID is renewed at about 30 s (half-life, with jitter).
    private static readonly TimeSpan RenewalWithin = TimeSpan.FromSeconds(75);

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task Renewal_of_both_sidecars_during_a_grpc_stream_and_a_keep_alive_connection_fails_no_request()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync(extraArgs: ["--svid-ttl", "1m"]);
        var (orders, ordersSidecar, frontend) = await DataPlaneFixture.StartOrdersAndFrontendAsync(_mesh, controlPlane);
        var firstSerial = (await ordersSidecar.ConfigDumpAsync()).GetProperty("identity").GetProperty("serial").GetString();
        var renewed = Task.WhenAll(
            ordersSidecar.Process.WaitForLineAsync("svid renewed ", RenewalWithin),
            frontend.Process.WaitForLineAsync("svid renewed ", RenewalWithin));

        // One keep-alive HTTP/1.1 connection from the app, and one gRPC Chat stream, both open across the renewals.
        var connections = new StrongBox<int>();
        using var http = new HttpClient(Mesh.HostAddressed(frontend, connections)) { Timeout = Mesh.Timeout };
        using var channel = GrpcChannel.ForAddress($"http://orders:{orders.GrpcPort}", new GrpcChannelOptions { HttpHandler = Mesh.HostAddressed(frontend) });
        using var call = new Echo.EchoClient(channel).Chat(deadline: DateTime.UtcNow.AddMinutes(3));

        var requests = 0;
        var firstExchangeBeforeRenewal = false;
        ulong messages = 0;
        using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        do
        {
            using (var response = await http.GetAsync($"http://orders:{orders.HttpPort}/keep-alive/{requests}"))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal(DataPlaneFixture.FrontendId, (await EchoClient.ReadEcho(response)).GetProperty("caller").GetString());
            }
            requests++;
            await call.RequestStream.WriteAsync(new EchoRequest { Message = $"message {++messages}" });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(messages, call.ResponseStream.Current.Sequence);
            Assert.Equal($"message {messages}", call.ResponseStream.Current.Message);
            if (requests == 1)
            {
                firstExchangeBeforeRenewal = ordersSidecar.Process.CountLines("svid renewed ") == 0 && frontend.Process.CountLines("svid renewed ") == 0;
            }
        }
        while (!renewed.IsCompleted && await pace.WaitForNextTickAsync());
        // Both the connection and the stream were in use before either sidecar renewed (else this proves nothing).
        Assert.True(firstExchangeBeforeRenewal, "a sidecar renewed before the first request: the traffic did not straddle the renewal");
        await renewed;

        // A few more after both renewals, on the same connection and the same stream.
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.GetAsync($"http://orders:{orders.HttpPort}/after-renewal/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await call.RequestStream.WriteAsync(new EchoRequest { Message = $"message {++messages}" });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(messages, call.ResponseStream.Current.Sequence);
        }
        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);

        output.WriteLine($"{requests} requests and {messages} stream messages across the renewals");
        Assert.Equal(1, connections.Value); // the app's keep-alive connection was never dropped

        // A new connection after the renewal meets the renewed certificate.
        var renewedSerial = (await ordersSidecar.ConfigDumpAsync()).GetProperty("identity").GetProperty("serial").GetString();
        Assert.NotEqual(firstSerial, renewedSerial);
        using var client = await WorkloadCredential.Issue(controlPlane, "shop", "frontend");
        Assert.Equal(renewedSerial, await ServerSerialAsync(ordersSidecar.Inbound, client, controlPlane.Bundle));
    }

    private static async Task<string> ServerSerialAsync(IPEndPoint inbound, X509Certificate2 clientCertificate, TrustBundle bundle)
    {
        using var timeout = new CancellationTokenSource(Mesh.Timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(inbound, timeout.Token);
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "orders.shop",
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = [SslApplicationProtocol.Http2],
            LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate,
            RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is X509Certificate2 server
                && SvidVerifier.Verify(server, null, bundle, DateTimeOffset.UtcNow).IsValid,
        }, timeout.Token);
        return ((X509Certificate2)tls.RemoteCertificate!).SerialNumber.ToLowerInvariant();
    }
}
