using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// New-connection cost: one request per connection, a fresh TCP connection and a full TLS 1.3 handshake each time
/// (TLS resumption off), presenting a real client SVID and verifying the server's SVID against the mesh bundle
/// (<see cref="SvidVerifier"/>, as a sidecar does). HTTP/2 by ALPN over TLS (the sidecar's inbound speaks only h2);
/// against a plaintext URL (the direct baseline) a fresh HTTP/1.1 connection. Closed loop: N workers, each opens a
/// connection, sends GET, reads the whole body, closes, and starts again.
/// </summary>
internal sealed class NewConnections(X509Certificate2 clientCertificate, TrustBundle bundle)
{
    private SocketsHttpHandler Handler(bool tls) => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        SslOptions = tls ? new SslClientAuthenticationOptions
        {
            ClientCertificates = [clientCertificate],
            EnabledSslProtocols = SslProtocols.Tls13,
            AllowTlsResume = false,
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                certificate is X509Certificate2 leaf && SvidVerifier.Verify(leaf, chain?.ChainElements.Skip(1).Select(e => e.Certificate), bundle, DateTimeOffset.UtcNow).IsValid,
        } : new SslClientAuthenticationOptions(),
    };

    /// <summary>One connection, one request; true when it answered 2xx. The connection is closed before returning.</summary>
    public async Task<bool> OnceAsync(Uri url, CancellationToken cancellation)
    {
        var tls = url.Scheme == Uri.UriSchemeHttps;
        using var invoker = new HttpMessageInvoker(Handler(tls), disposeHandler: true);
        using var request = new HttpRequestMessage(HttpMethod.Get, url)
        {
            Version = tls ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        using var response = await invoker.SendAsync(request, timeout.Token);
        await response.Content.CopyToAsync(Stream.Null, timeout.Token);
        return response.IsSuccessStatusCode;
    }

    /// <summary><paramref name="workers"/> closed loops for <paramref name="duration"/>; latency = connect + handshake + request + body.</summary>
    public Task<ClientResult> ClosedLoopAsync(Uri url, int workers, TimeSpan duration, CancellationToken cancellation) =>
        LoadClients.ClosedLoopAsync(workers, duration, token => OnceAsync(url, token), cancellation);

    /// <summary>Milliseconds from <paramref name="startedAt"/> (a process's exec) to the first 2xx answer from <paramref name="url"/>, polled every 5 ms.</summary>
    public async Task<double> FirstSuccessAsync(Uri url, long startedAt, LoadProcess process, TimeSpan timeout, CancellationToken cancellation)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var last = "no attempt";
        while (Stopwatch.GetTimestamp() < deadline && !process.HasExited)
        {
            try
            {
                if (await OnceAsync(url, cancellation))
                {
                    return Stopwatch.GetElapsedTime(startedAt).TotalMilliseconds;
                }
                last = "non-2xx answer";
            }
            catch (Exception e) when (e is HttpRequestException or AuthenticationException || (e is OperationCanceledException && !cancellation.IsCancellationRequested))
            {
                last = e.Message;
            }
            await Task.Delay(5, cancellation);
        }
        throw new InvalidOperationException($"{process.Name} did not answer 2xx at {url} within {timeout.TotalSeconds}s{(process.HasExited ? " (it exited)" : "")}: {last}\n{process.Output}");
    }

    private static long At(long[] sorted, double q) => sorted.Length == 0 ? -1 : sorted[Math.Max(0, (int)Math.Ceiling(q * sorted.Length) - 1)];

    private static double Ms(long ticks) => ticks < 0 ? double.NaN : ticks * 1000.0 / Stopwatch.Frequency;
}
