using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;

namespace ZeroTrustMesh.Sidecar.Health;

/// <summary>What one run of an app probe found: the status code to answer kubelet with, and why.</summary>
internal readonly record struct ProbeOutcome(int Status, string Reason);

/// <summary>
/// Runs the app's probes against the app on loopback, as kubelet would have: HTTP(S) succeeds with the app's own
/// status (kubelet counts 200–399), TCP when a connection opens, gRPC when <c>grpc.health.v1.Health/Check</c> says
/// SERVING. A probe that cannot run (refused, timed out) is a 503 saying why.
/// </summary>
internal sealed class AppProber : IDisposable
{
    // Kubelet does not verify an HTTPS probe's certificate, so neither does the sidecar; a probe reads nothing but a status.
    private readonly HttpMessageInvoker _http = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
#pragma warning disable CA5359 // on purpose, as kubelet: the app's own certificate on loopback is not what a probe checks
        SslOptions = { RemoteCertificateValidationCallback = static (_, _, _, _) => true },
#pragma warning restore CA5359
    });

    public async Task<ProbeOutcome> RunAsync(AppProbe probe, CancellationToken cancellation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(probe.Timeout);
        try
        {
            return probe switch
            {
                AppProbe.Http http => await HttpAsync(http, timeout.Token),
                AppProbe.Tcp tcp => await TcpAsync(tcp, timeout.Token),
                AppProbe.Grpc grpc => await GrpcAsync(grpc, timeout.Token),
                _ => throw new InvalidOperationException(probe.GetType().Name),
            };
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            return new(StatusCodes.Status503ServiceUnavailable, $"the app did not answer within {probe.Timeout.TotalSeconds:0.#}s");
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or IOException)
        {
            return new(StatusCodes.Status503ServiceUnavailable, $"the app's probe failed: {e.Message}");
        }
    }

    private async Task<ProbeOutcome> HttpAsync(AppProbe.Http probe, CancellationToken cancellation)
    {
        var uri = new Uri($"{(probe.Https ? "https" : "http")}://127.0.0.1:{probe.Port}{probe.PathAndQuery}");
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.UserAgent.Add(new ProductInfoHeaderValue("ztm-sidecar-probe", "1"));
        foreach (var (name, value) in probe.Headers)
        {
            if (string.Equals(name, "Host", StringComparison.OrdinalIgnoreCase))
            {
                request.Headers.Host = value;
            }
            else
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }
        using var response = await _http.SendAsync(request, cancellation);
        var status = (int)response.StatusCode;
        return new(status, $"the app answered {status} on {probe.PathAndQuery}");
    }

    private static async Task<ProbeOutcome> TcpAsync(AppProbe.Tcp probe, CancellationToken cancellation)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, probe.Port), cancellation);
        return new(StatusCodes.Status200OK, $"port {probe.Port} accepts connections");
    }

    /// <summary>
    /// <c>grpc.health.v1.Health/Check</c> over h2c, encoded by hand: the request is one string field, the answer one
    /// enum, and a generated client would pull a protobuf package into the sidecar for two bytes.
    /// </summary>
    private async Task<ProbeOutcome> GrpcAsync(AppProbe.Grpc probe, CancellationToken cancellation)
    {
        var service = System.Text.Encoding.UTF8.GetBytes(probe.Service);
        var message = new List<byte>();
        if (service.Length > 0)
        {
            message.Add(0x0A); // field 1 (service), length-delimited
            for (var n = (uint)service.Length; ; n >>= 7)
            {
                message.Add((byte)(n < 0x80 ? n : (n & 0x7F) | 0x80));
                if (n < 0x80)
                {
                    break;
                }
            }
            message.AddRange(service);
        }
        var frame = new byte[5 + message.Count];
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)message.Count);
        message.CopyTo(frame, 5);

        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{probe.Port}/grpc.health.v1.Health/Check")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(frame),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        using var response = await _http.SendAsync(request, cancellation);
        var body = await response.Content.ReadAsByteArrayAsync(cancellation);
        var grpcStatus = response.TrailingHeaders.TryGetValues("grpc-status", out var trailer) ? trailer.FirstOrDefault()
            : response.Headers.TryGetValues("grpc-status", out var header) ? header.FirstOrDefault() : null;
        if (response.StatusCode != HttpStatusCode.OK || grpcStatus != "0")
        {
            return new(StatusCodes.Status503ServiceUnavailable, $"the app's health check failed (HTTP {(int)response.StatusCode}, grpc-status {grpcStatus ?? "none"})");
        }
        // HealthCheckResponse { ServingStatus status = 1; } — SERVING is 1; an absent field is UNKNOWN (0).
        var servingStatus = body.Length >= 7 && body[5] == 0x08 ? body[6] : 0;
        return servingStatus == 1
            ? new(StatusCodes.Status200OK, $"service '{probe.Service}' is SERVING")
            : new(StatusCodes.Status503ServiceUnavailable, $"service '{probe.Service}' is not serving (status {servingStatus})");
    }

    public void Dispose() => _http.Dispose();
}
