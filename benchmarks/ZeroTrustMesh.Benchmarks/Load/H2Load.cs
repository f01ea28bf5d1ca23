using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>
/// Closed-loop HTTP/2 capacity with <c>h2load</c> (nghttp2): fixed clients (connections) and streams per client, h2c
/// prior knowledge, a fixed duration after a warm-up. gRPC unary is the same with a POST of a length-prefixed protobuf
/// message and the gRPC headers. h2load reports min/max/mean/sd of the request time, no percentiles: the report gives the mean.
/// </summary>
internal static partial class H2Load
{
    public const string GrpcPath = "/ztm.v1.Echo/Unary";

    /// <summary>A gRPC unary request body: the 5-byte gRPC frame prefix (uncompressed, big-endian length) and <c>EchoRequest{message}</c>.</summary>
    public static byte[] GrpcEchoBody(string message)
    {
        var text = System.Text.Encoding.UTF8.GetBytes(message);
        if (text.Length > 127)
        {
            throw new ArgumentException("keep the message under 128 bytes (one-byte varint length)", nameof(message));
        }
        byte[] proto = [0x0A, (byte)text.Length, .. text]; // field 1 (string), wire type 2
        return [0, 0, 0, 0, (byte)proto.Length, .. proto];
    }

    public static async Task<ClientResult> RunAsync(Uri url, string? authority, string? postFile, IReadOnlyList<string> headers, int clients, int streams, int threads,
        TimeSpan duration, TimeSpan warmup, CancellationToken cancellation)
    {
        var start = new ProcessStartInfo("h2load") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var seconds = Math.Max(1, (int)Math.Ceiling(duration.TotalSeconds));
        foreach (var arg in new[] { $"-c{clients}", $"-m{streams}", $"-t{Math.Min(threads, clients)}", "-D", seconds.ToString(CultureInfo.InvariantCulture),
            "--warm-up-time", $"{Math.Max(0, (int)warmup.TotalMilliseconds)}ms", "-T", "10" })
        {
            start.ArgumentList.Add(arg);
        }
        if (authority is not null)
        {
            start.ArgumentList.Add("-H");
            start.ArgumentList.Add($":authority: {authority}");
        }
        foreach (var header in headers)
        {
            start.ArgumentList.Add("-H");
            start.ArgumentList.Add(header);
        }
        if (postFile is not null)
        {
            start.ArgumentList.Add("-d");
            start.ArgumentList.Add(postFile);
        }
        start.ArgumentList.Add(url.ToString());
        using var h2load = Process.Start(start)!;
        var stdout = h2load.StandardOutput.ReadToEndAsync(cancellation);
        var stderr = h2load.StandardError.ReadToEndAsync(cancellation);
        using (var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellation))
        {
            bound.CancelAfter(duration + warmup + TimeSpan.FromSeconds(20));
            try
            {
                await h2load.WaitForExitAsync(bound.Token);
            }
            catch (OperationCanceledException)
            {
                h2load.Kill();
                throw new TimeoutException($"h2load (pid {h2load.Id}) did not finish within {(duration + warmup).TotalSeconds + 20}s");
            }
        }
        var text = await stdout + await stderr;
        var finished = Finished().Match(text);
        var requests = Requests().Match(text);
        var status = StatusCodes().Match(text);
        if (!finished.Success || !requests.Success || !status.Success)
        {
            throw new InvalidOperationException($"h2load printed no summary (exit code {h2load.ExitCode}):\n{text}");
        }
        long Group(Match m, int g) => long.Parse(m.Groups[g].Value, CultureInfo.InvariantCulture);
        var done = Group(requests, 3);
        var success2xx = Group(status, 1);
        var kinds = new Dictionary<string, long>
        {
            ["h2load: failed"] = Group(requests, 5),
            ["h2load: errored"] = Group(requests, 6),
            ["h2load: timeout"] = Group(requests, 7),
            ["h2load: done with a status other than 2xx"] = Math.Max(0, done - success2xx - Group(requests, 5)),
        }.Where(k => k.Value > 0).ToDictionary();
        var errors = kinds.Values.Sum();
        var elapsed = Seconds(finished.Groups[1].Value);
        var mean = RequestTime().Match(text) is { Success: true } t ? Ms(t.Groups[3].Value) : double.NaN;
        return new ClientResult(success2xx, errors, elapsed, double.Parse(finished.Groups[2].Value, CultureInfo.InvariantCulture),
            double.NaN, double.NaN, double.NaN, double.NaN, Group(requests, 2)) { MeanMs = mean, ErrorsByKind = kinds };
    }

    /// <summary>
    /// One request over h2c prior knowledge with the given body and headers; true when it answers 200 (and, for gRPC,
    /// <c>grpc-status: 0</c> in the trailers). Checked before measuring, because h2load only sees the HTTP status.
    /// </summary>
    public static async Task<string?> ProbeAsync(Uri url, string? authority, byte[]? grpcBody, CancellationToken cancellation)
    {
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(5) }) { Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(grpcBody is null ? HttpMethod.Get : HttpMethod.Post, url)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        if (authority is not null)
        {
            request.Headers.Host = authority;
        }
        if (grpcBody is not null)
        {
            request.Content = new ByteArrayContent(grpcBody);
            request.Content.Headers.TryAddWithoutValidation("content-type", "application/grpc");
            request.Headers.TryAddWithoutValidation("te", "trailers");
        }
        try
        {
            using var response = await client.SendAsync(request, cancellation);
            var body = await response.Content.ReadAsByteArrayAsync(cancellation);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                return $"HTTP {(int)response.StatusCode}: {System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(200, body.Length)))}";
            }
            if (grpcBody is not null)
            {
                var grpcStatus = response.TrailingHeaders.TryGetValues("grpc-status", out var values) ? values.FirstOrDefault()
                    : response.Headers.TryGetValues("grpc-status", out var inHeaders) ? inHeaders.FirstOrDefault() : null;
                if (grpcStatus != "0")
                {
                    return $"grpc-status {grpcStatus ?? "missing"}";
                }
            }
            return null;
        }
        catch (HttpRequestException e)
        {
            return e.Message;
        }
    }

    private static double Seconds(string value) => value.EndsWith("ms", StringComparison.Ordinal)
        ? double.Parse(value[..^2], CultureInfo.InvariantCulture) / 1000
        : double.Parse(value.TrimEnd('s'), CultureInfo.InvariantCulture);

    private static double Ms(string value) =>
        value.EndsWith("us", StringComparison.Ordinal) ? double.Parse(value[..^2], CultureInfo.InvariantCulture) / 1000
        : value.EndsWith("ms", StringComparison.Ordinal) ? double.Parse(value[..^2], CultureInfo.InvariantCulture)
        : double.Parse(value.TrimEnd('s'), CultureInfo.InvariantCulture) * 1000;

    [GeneratedRegex(@"finished in ([\d.]+m?s), ([\d.]+) req/s")]
    private static partial Regex Finished();

    [GeneratedRegex(@"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")]
    private static partial Regex Requests();

    [GeneratedRegex(@"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")]
    private static partial Regex StatusCodes();

    [GeneratedRegex(@"time for request:\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)")]
    private static partial Regex RequestTime();
}
