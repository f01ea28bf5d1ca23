using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

// ztm-floor-relay --port <n, 0 = any free> --upstream <host:port> (--tls-client <pem> | --tls-server <pem>) --ca <pem>
// The floor of what .NET's sockets and TLS cost on this machine (issue 20): one connection in, one connection out, bytes
// copied both ways, nothing parsed. --tls-client takes plaintext on --port and opens TLS 1.3 with its certificate to
// --upstream; --tls-server takes TLS 1.3 on --port (client certificate required, chained to --ca) and opens plaintext
// to --upstream. Both check the peer's chain against --ca once per connection, as the sidecar does (it also checks the
// SPIFFE ID). Two of them are the pair a sidecar pair is measured against: whatever the sidecar costs beyond it is ours.

string? Flag(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

const string Usage = "usage: ztm-floor-relay --port <port, 0 = any free> --upstream <host:port> (--tls-client <cert+key pem> | --tls-server <cert+key pem>) --ca <pem>";
var clientPem = Flag("--tls-client");
var serverPem = Flag("--tls-server");
if (!int.TryParse(Flag("--port"), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > IPEndPoint.MaxPort
    || !IPEndPoint.TryParse(Flag("--upstream") ?? "", out var upstream) || upstream.Port == 0
    || (clientPem is null) == (serverPem is null) || Flag("--ca") is not { } caPem)
{
    Console.Error.WriteLine(Usage);
    return 2;
}

SslStreamCertificateContext context;
X509Certificate2Collection roots = [];
try
{
    var chain = new X509Certificate2Collection();
    chain.ImportFromPemFile(clientPem ?? serverPem!);
    var leaf = X509Certificate2.CreateFromPemFile(clientPem ?? serverPem!);
    context = SslStreamCertificateContext.Create(leaf, [.. chain.Skip(1)], offline: true);
    roots.ImportFromPemFile(caPem);
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
{
    Console.Error.WriteLine($"ztm-floor-relay: cannot load {clientPem ?? serverPem} or {caPem}: {e.Message}");
    return 1;
}

var isClientSide = clientPem is not null;
var clientOptions = new SslClientAuthenticationOptions
{
    EnabledSslProtocols = SslProtocols.Tls13,
    ClientCertificateContext = context,
    TargetHost = "ztm-floor-relay",
    RemoteCertificateValidationCallback = (_, peer, _, _) => peer is X509Certificate2 server && ChainsToRoots(server, roots),
};
var serverOptions = new SslServerAuthenticationOptions
{
    EnabledSslProtocols = SslProtocols.Tls13,
    ServerCertificateContext = context,
    ClientCertificateRequired = true,
    // h2 for the new-connection client (the bytes go on to the app, which detects the protocol), then HTTP/1.1.
    ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
    RemoteCertificateValidationCallback = (_, peer, _, _) => peer is X509Certificate2 client && ChainsToRoots(client, roots),
};

using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
listener.Listen(512);
using var stopping = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stopping.Cancel();
};
AppDomain.CurrentDomain.ProcessExit += (_, _) => stopping.Cancel();
// As the sidecar does once it is ready: collect the start-up garbage, so idle RSS is not start-up leftovers.
GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
Console.Out.WriteLine($"ztm-floor-relay: listening on {(isClientSide ? "tcp" : "tls")}://{listener.LocalEndPoint}");
Console.Out.Flush();
try
{
    while (true)
    {
        var accepted = await listener.AcceptAsync(stopping.Token);
        _ = RelayAsync(accepted);
    }
}
catch (OperationCanceledException)
{
    return 0;
}

async Task RelayAsync(Socket accepted)
{
    accepted.NoDelay = true;
    using var outgoing = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    await using var inbound = new NetworkStream(accepted, ownsSocket: true);
    try
    {
        await outgoing.ConnectAsync(upstream);
        await using var outbound = new NetworkStream(outgoing, ownsSocket: false);
        if (isClientSide)
        {
            await using var tls = new SslStream(outbound);
            await tls.AuthenticateAsClientAsync(clientOptions);
            await PumpAsync(inbound, tls);
        }
        else
        {
            await using var tls = new SslStream(inbound);
            await tls.AuthenticateAsServerAsync(serverOptions);
            await PumpAsync(tls, outbound);
        }
    }
    catch (Exception e) when (e is IOException or SocketException or AuthenticationException or ObjectDisposedException)
    {
        // The peer went away or failed the handshake: this connection ends, the relay goes on.
    }
}

// Both directions until either side closes; then the other is closed too (no half-close: HTTP clients do not use it).
static async Task PumpAsync(Stream a, Stream b)
{
    var first = await Task.WhenAny(CopyAsync(a, b), CopyAsync(b, a));
    await first;
}

static async Task CopyAsync(Stream from, Stream to)
{
    var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
    try
    {
        int read;
        while ((read = await from.ReadAsync(buffer)) > 0)
        {
            await to.WriteAsync(buffer.AsMemory(0, read));
        }
    }
    finally
    {
        ArrayPool<byte>.Shared.Return(buffer);
    }
}

static bool ChainsToRoots(X509Certificate2 peer, X509Certificate2Collection roots)
{
    using var chain = new X509Chain();
    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
    chain.ChainPolicy.CustomTrustStore.AddRange(roots);
    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
    return chain.Build(peer);
}
