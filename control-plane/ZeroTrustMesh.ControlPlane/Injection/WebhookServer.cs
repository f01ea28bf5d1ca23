using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>
/// The HTTPS listener the Kubernetes API server calls: its own Kestrel, apart from the gRPC listener (HTTP/1.1 and
/// HTTP/2, no client certificate, one route), serving <see cref="AdmissionWebhook"/> with the certificate
/// <see cref="WebhookCertificate"/> keeps current.
/// </summary>
internal sealed class WebhookServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private WebhookServer(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    /// <summary>The bound port (the real one when 0 was asked for).</summary>
    public int Port { get; }

    public static async Task<WebhookServer> StartAsync(
        IPAddress address, int port, AdmissionWebhook webhook, WebhookCertificate certificate, Action<ILoggingBuilder> logging, CancellationToken cancellation)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging(builder.Logging);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = AdmissionWebhook.MaxBodyBytes + 1L;
            kestrel.Listen(address, port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = certificate.Current,
                        EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                        ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                    }),
                });
            });
        });
        var app = builder.Build();
        app.MapPost(AdmissionWebhook.Path, webhook.HandleAsync);
        await app.StartAsync(cancellation);
        var bound = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        return new WebhookServer(app, bound.Port);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
