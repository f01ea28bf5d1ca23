using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using ZeroTrustMesh.Sidecar.Admin;
using ZeroTrustMesh.Sidecar.Identity;

namespace ZeroTrustMesh.Sidecar;

/// <summary>The composition root: identity first (everything else depends on it), then the admin listener.</summary>
internal static class SidecarHost
{
    public static async Task<int> RunAsync(SidecarOptions options, CancellationToken cancellation)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<IdentityState>();
        services.AddSingleton<IIdentityIssuer, GrpcIdentityIssuer>();
        services.AddSingleton<CertificateRotator>();
        services.AddHostedService(sp => sp.GetRequiredService<CertificateRotator>());

        // Admin is loopback only: it tells what identity this pod holds.
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(IPAddress.Loopback, options.AdminPort);
        });

        await using var app = builder.Build();
        app.MapAdmin();
        try
        {
            await app.StartAsync(cancellation);
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"ztm-sidecar: cannot listen on 127.0.0.1:{options.AdminPort}: {e.Message}");
            return 1;
        }
        var admin = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Console.Out.WriteLine($"ztm-sidecar: admin listening on {admin} (control plane {options.ControlPlane})");
        Console.Out.Flush();

        await app.WaitForShutdownAsync(cancellation);
        // A refused join token stops the sidecar; say so in the exit code.
        return app.Services.GetRequiredService<CertificateRotator>().FirstIdentity.IsFaulted ? 1 : 0;
    }
}
