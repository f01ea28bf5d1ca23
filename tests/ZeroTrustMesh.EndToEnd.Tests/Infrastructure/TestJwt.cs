using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>An EC P-256 issuer key made in the test: its JWKS and ES256 tokens, signed by hand (no JWT library on this side).</summary>
internal sealed class TestJwtIssuer(string issuer, string kid = "k1") : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public string Issuer => issuer;

    public string Jwks
    {
        get
        {
            var p = _key.ExportParameters(false);
            return $$"""{"keys":[{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"{{kid}}","x":"{{Base64Url(p.Q.X!)}}","y":"{{Base64Url(p.Q.Y!)}}"}]}""";
        }
    }

    public string Token(string subject, string audience, string? scope, TimeSpan lifetime, DateTimeOffset? issuedAt = null, IReadOnlyDictionary<string, string>? more = null)
    {
        var now = issuedAt ?? DateTimeOffset.UtcNow;
        var header = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["alg"] = "ES256", ["typ"] = "JWT", ["kid"] = kid });
        var claims = new Dictionary<string, object>
        {
            ["iss"] = issuer,
            ["sub"] = subject,
            ["aud"] = audience,
            ["iat"] = now.ToUnixTimeSeconds(),
            ["nbf"] = now.ToUnixTimeSeconds(),
            ["exp"] = (now + lifetime).ToUnixTimeSeconds(),
        };
        if (scope is not null)
        {
            claims["scope"] = scope;
        }
        foreach (var (name, value) in more ?? new Dictionary<string, string>())
        {
            claims[name] = value;
        }
        var signed = Base64Url(header) + "." + Base64Url(JsonSerializer.SerializeToUtf8Bytes(claims));
        return signed + "." + Base64Url(_key.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256));
    }

    public void Dispose() => _key.Dispose();

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

/// <summary>A JWKS endpoint on loopback HTTP, answering every request with the current body; counts requests.</summary>
internal sealed class LoopbackJwksServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _serving;
    private int _requests;

    public LoopbackJwksServer(string jwks)
    {
        Jwks = jwks;
        _listener.Start();
        _serving = ServeAsync();
    }

    public string Jwks { get; set; }

    public string Uri => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/jwks";

    public int Requests => Volatile.Read(ref _requests);

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            using (client)
            {
                var stream = client.GetStream();
                var buffer = new byte[8192];
                var read = 0;
                while (read < buffer.Length && !Encoding.ASCII.GetString(buffer, 0, read).Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var n = await stream.ReadAsync(buffer.AsMemory(read), _stop.Token);
                    if (n == 0)
                    {
                        break;
                    }
                    read += n;
                }
                Interlocked.Increment(ref _requests);
                var body = Encoding.UTF8.GetBytes(Jwks);
                var head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
                await stream.WriteAsync(head, _stop.Token);
                await stream.WriteAsync(body, _stop.Token);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _serving.ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }
}
