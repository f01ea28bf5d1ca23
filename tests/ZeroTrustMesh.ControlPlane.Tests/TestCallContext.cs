using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace ZeroTrustMesh.ControlPlane.Tests;

/// <summary>
/// What a gRPC service method sees of its call, for calling a service directly: the peer, the client certificate
/// (none for a first signing) on the HTTP context where <c>PeerCertificate</c> reads it, and a cancellation.
/// </summary>
internal sealed class TestCallContext : ServerCallContext
{
    public const string PeerAddress = "ipv4:127.0.0.1:1";

    private readonly CancellationToken _cancellation;
    private readonly string _method;

    public TestCallContext(string method, X509Certificate2? certificate = null, CancellationToken cancellation = default)
    {
        _method = method;
        _cancellation = cancellation;
        var http = new DefaultHttpContext();
        http.Connection.ClientCertificate = certificate;
        UserState["__HttpContext"] = http;
    }

    protected override string MethodCore => _method;

    protected override string HostCore => "localhost";

    protected override string PeerCore => PeerAddress;

    protected override DateTime DeadlineCore => DateTime.MaxValue;

    protected override Metadata RequestHeadersCore { get; } = [];

    protected override CancellationToken CancellationTokenCore => _cancellation;

    protected override Metadata ResponseTrailersCore { get; } = [];

    protected override Status StatusCore { get; set; }

    protected override WriteOptions? WriteOptionsCore { get; set; }

    protected override AuthContext AuthContextCore => new(null, []);

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
}
