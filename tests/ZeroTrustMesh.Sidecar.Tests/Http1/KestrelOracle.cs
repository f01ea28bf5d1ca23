using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.Sidecar.Http1;

namespace ZeroTrustMesh.Sidecar.Tests.Http1;

/// <summary>
/// A real Kestrel on 127.0.0.1:0 with the sidecar's limits and its <c>RequestFraming</c> rule, whose handler reads each
/// request's body and answers with what it saw (<see cref="Exchange.Report"/>) in a header. Raw bytes go in through a
/// socket, and every answer up to the close comes back: the reference the hand-written
/// framing is compared with.
/// </summary>
internal sealed class KestrelOracle : IAsyncDisposable
{
    private readonly WebApplication _app;

    private KestrelOracle(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public static async Task<KestrelOracle> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Short deadlines end the cases whose bytes stop inside a head or a body (Kestrel's timer ticks each second).
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(1);
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(1); // a case whose leftovers are only empty lines
            kestrel.Limits.MinRequestBodyDataRate = new Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate(bytesPerSecond: 1_000_000, gracePeriod: TimeSpan.FromSeconds(1.1));
            kestrel.Limits.MaxRequestHeadersTotalSize = Http1Limits.Sidecar.MaxHeadersTotal;
            kestrel.Limits.MaxRequestLineSize = Http1Limits.Sidecar.MaxRequestLine;
            kestrel.Limits.MaxRequestHeaderCount = Http1Limits.Sidecar.MaxHeaderCount;
            kestrel.Limits.MaxRequestBodySize = null; // YARP lifts it for every forwarded request
            kestrel.Listen(IPAddress.Loopback, 0);
        });
        var app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return new KestrelOracle(app, new Uri(address).Port);
    }

    /// <summary>Sends <paramref name="bytes"/> on a fresh connection and returns the answers until Kestrel closes it.</summary>
    public async Task<(List<Exchange> Answers, string Raw)> SendAsync(byte[] bytes, CancellationToken cancellation)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), cancellation);
        try
        {
            // No half-close: Kestrel aborts a connection whose client shuts its send side. Every case ends with a
            // request saying Connection: close, and a case cut short is ended by Kestrel's own head and body deadlines.
            await socket.SendAsync(bytes, SocketFlags.None, cancellation);
        }
        catch (SocketException)
        {
            // Kestrel may close on a refusal before it has read everything.
        }
        var received = new MemoryStream();
        var chunk = new byte[16 * 1024];
        try
        {
            int n;
            while ((n = await socket.ReceiveAsync(chunk, SocketFlags.None, cancellation)) > 0)
            {
                received.Write(chunk, 0, n);
            }
        }
        catch (SocketException e)
        {
            // A reset after the answers: what was received stands.
            received.Write(Encoding.ASCII.GetBytes($"[{e.SocketErrorCode}]"));
        }
        return (ParseAnswers(received.ToArray()), Encoding.Latin1.GetString(received.ToArray()));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static async Task HandleAsync(HttpContext context)
    {
        if (RequestFraming.Problem(context.Request) is not null)
        {
            context.Response.StatusCode = 400;
            context.Response.Headers.Connection = "close";
            return;
        }
        var body = new MemoryStream();
        try
        {
            await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        }
        catch (BadHttpRequestException e)
        {
            context.Response.StatusCode = e.StatusCode;
            context.Response.Headers.Connection = "close";
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Kestrel's chunked reader throws other exceptions too (a chunk size past int.MaxValue): the body is refused.
            context.Response.StatusCode = 400;
            context.Response.Headers.Connection = "close";
            return;
        }
        var headers = context.Request.Headers.SelectMany(h => h.Value.Select(v => (h.Key, v ?? "")));
        var raw = context.Features.GetRequiredFeature<IHttpRequestFeature>().RawTarget;
        context.Response.Headers["x-report"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(Exchange.Report(context.Request.Method, raw, headers, body.ToArray())));
        context.Response.ContentLength = 0;
    }

    /// <summary>Kestrel's answers are well-formed and framed by Content-Length; a truncated tail is dropped.</summary>
    private static List<Exchange> ParseAnswers(byte[] bytes)
    {
        var answers = new List<Exchange>();
        var text = Encoding.Latin1.GetString(bytes);
        var at = 0;
        while (at < text.Length)
        {
            var end = text.IndexOf("\r\n\r\n", at, StringComparison.Ordinal);
            if (end < 0)
            {
                break;
            }
            var lines = text[at..end].Split("\r\n");
            var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
            string? report = null;
            var length = 0;
            foreach (var line in lines.Skip(1))
            {
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                var name = line[..colon].Trim();
                var value = line[(colon + 1)..].Trim();
                if (name.Equals("x-report", StringComparison.OrdinalIgnoreCase))
                {
                    report = Encoding.UTF8.GetString(Convert.FromBase64String(value));
                }
                else if (name.Equals("content-length", StringComparison.OrdinalIgnoreCase))
                {
                    length = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture);
                }
            }
            answers.Add(new Exchange(status, report));
            at = end + 4 + length;
        }
        return answers;
    }
}

/// <summary>One answer on a connection: the status, and for an accepted request what the server saw.</summary>
internal sealed record Exchange(int Status, string? Seen)
{
    /// <summary>The request as a server saw it: method, raw target, the fields by lower-case name (in order within a
    /// name), and the decoded body.</summary>
    public static string Report(string method, string target, IEnumerable<(string Name, string Value)> fields, byte[] body)
    {
        var text = new StringBuilder().Append(method).Append('\n').Append(target).Append('\n');
        foreach (var (name, value) in fields.Select(f => (Name: f.Name.ToLowerInvariant(), f.Value)).OrderBy(f => f.Name, StringComparer.Ordinal))
        {
            text.Append(name).Append(": ").Append(value).Append('\n');
        }
        return text.Append("body ").Append(Convert.ToHexString(body)).ToString();
    }

    public override string ToString() => Seen is null ? $"{Status}" : $"{Status} [{Seen.Replace("\n", " | ", StringComparison.Ordinal)}]";
}
