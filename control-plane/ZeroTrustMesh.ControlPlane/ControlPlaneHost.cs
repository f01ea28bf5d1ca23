using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using ZeroTrustMesh.ControlPlane.Anomalies;
using ZeroTrustMesh.ControlPlane.Api;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Discovery;
using ZeroTrustMesh.ControlPlane.Injection;
using ZeroTrustMesh.ControlPlane.Kubernetes;
using ZeroTrustMesh.ControlPlane.LeastPrivilege;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.ControlPlane.Telemetry;
using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto;

namespace ZeroTrustMesh.ControlPlane;

/// <summary>The composition root: CA first, then what depends on it, then the gRPC listener.</summary>
internal static class ControlPlaneHost
{
    public static async Task<int> RunAsync(ControlPlaneOptions options, CancellationToken cancellation)
    {
        var time = TimeProvider.System;
        var kubernetes = options.Kubernetes ? KubernetesAccess.CreateClient() : null;
        var ownNamespace = options.Namespace ?? (options.Kubernetes ? KubernetesAccess.DefaultNamespace() : null);
        ICaStore caStore = kubernetes is not null ? new SecretCaStore(kubernetes, ownNamespace!, options, time) : new FileCaStore(options, time);
        CertificateAuthority ca;
        CaOrigin origin;
        try
        {
            (ca, origin) = caStore.LoadOrCreate();
            CaRotation.Resume(ca, caStore, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or CryptographicException)
        {
            Console.Error.WriteLine($"ztm-controlplane: cannot set up the CA: {e.Message}");
            return 1;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.AddMeshConsole();

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(time);
        services.AddSingleton<ICaStore>(caStore);
        services.AddSingleton(ca);
        if (kubernetes is not null)
        {
            services.AddKubernetesState(kubernetes, ownNamespace!, options); // first: the Lease is released last
            services.AddKubernetesPolicy(_ => kubernetes); // before the standalone state: instead of the policy directory
            services.AddKubernetesRegistry(_ => kubernetes); // and instead of the sidecars' registrations
        }
        services.AddStandaloneState(options);
        services.AddControlPlane();
        services.AddAnomalyResponse();
        services.AddObservations();
        services.AddApiDiscovery(options);
        services.AddLeastPrivilege();
        if (options.Kubernetes)
        {
            services.AddKubernetesAttestation(_ => kubernetes!);
        }
        if (options.WebhookConfiguration is { } webhookConfiguration)
        {
            services.AddHostedService(sp => new CaBundlePublisher(
                sp.GetRequiredService<k8s.IKubernetes>(), webhookConfiguration, sp.GetRequiredService<TrustBundleFeed>(), time,
                sp.GetRequiredService<IReplicaLeadership>(), sp.GetRequiredService<ILogger<CaBundlePublisher>>())); // leader-only
            services.AddHostedService(sp => new RootConfigMapPublisher(
                sp.GetRequiredService<k8s.IKubernetes>(), sp.GetRequiredService<TrustBundleFeed>(), time,
                sp.GetRequiredService<IReplicaLeadership>(), sp.GetRequiredService<ILogger<RootConfigMapPublisher>>())); // leader-only
        }
        services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = options.MaxRequestBytes;
            o.EnableDetailedErrors = false;
        })
            .AddServiceOptions<IdentityAdminService>(o => o.Interceptors.Add<OperatorOnlyInterceptor>())
            .AddServiceOptions<CaAdminService>(o => o.Interceptors.Add<OperatorOnlyInterceptor>())
            .AddServiceOptions<Audit.AuditAdminService>(o => o.Interceptors.Add<OperatorOnlyInterceptor>())
            .AddServiceOptions<AnomalyAdminService>(o => o.Interceptors.Add<OperatorOnlyInterceptor>())
            .AddServiceOptions<PolicyAdminService>(o =>
            {
                o.Interceptors.Add<OperatorOnlyInterceptor>();
                // Room for the largest apply plus its framing, so that a larger one reaches Apply and is refused with the limit named.
                o.MaxReceiveMessageSize = PolicyAdminLimits.MaxApplyBytes + 64 * 1024;
            })
            // Room for a batch over the limit, so that it is refused naming the limit (INVALID_ARGUMENT), not cut off.
            .AddServiceOptions<ApiAdminService>(o => o.Interceptors.Add<OperatorOnlyInterceptor>())
            .AddServiceOptions<ObservationService>(o => o.MaxReceiveMessageSize = ObservationLimits.MaxBatchBytes + 64 * 1024);

        ListenOptions? grpcListener = null;
        ListenOptions? metricsListener = null;
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            kestrel.AddServerHeader = false;
            var credentials = kestrel.ApplicationServices.GetRequiredService<ControlPlaneCredentials>();
            var guard = new ListenerGuard(time, kestrel.ApplicationServices.GetRequiredService<ILogger<ListenerGuard>>());
            kestrel.Listen(options.ListenAddress, options.Port, listen =>
            {
                grpcListener = listen;
                listen.Protocols = HttpProtocols.Http2;
                listen.Use(guard.BeforeTls);
                listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = credentials.ServingCertificate,
                        EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                        ApplicationProtocols = [SslApplicationProtocol.Http2],
                        // Ask for a client certificate but let the call decide: signing with a join token has
                        // none yet; renewal and admin calls verify it and answer with a gRPC status.
                        ClientCertificateRequired = true,
#pragma warning disable CA5359 // verified per call with SvidVerifier against our own bundle, not at the handshake
                        RemoteCertificateValidationCallback = (_, _, _, _) => true,
#pragma warning restore CA5359
                    }),
                });
                listen.Use(guard.AfterTls);
            });
            metricsListener = kestrel.ListenMetrics(options.ListenAddress, options.MetricsPort);
        });

        await using var app = builder.Build();
        app.UseMetricsPort(() => metricsListener!, app.Services.GetRequiredService<ControlPlaneMetrics>().Registry);
        app.MapGrpcService<IdentityService>();
        app.MapGrpcService<IdentityAdminService>();
        app.MapGrpcService<CaAdminService>();
        app.MapGrpcService<RegistryService>();
        app.MapGrpcService<MeshConfigService>();
        app.MapGrpcService<PolicyAdminService>();
        app.MapGrpcService<AnomalyAdminService>();
        app.MapGrpcService<ObservationService>();
        app.MapGrpcService<ApiAdminService>();
        app.MapGrpcService<Audit.AuditService>();
        app.MapGrpcService<Audit.AuditAdminService>();

        try
        {
            await app.StartAsync(cancellation);
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"ztm-controlplane: cannot listen on {options.ListenAddress} (gRPC port {options.Port}, metrics port {options.MetricsPort}): {e.Message}");
            return 1;
        }

        await using var webhook = options.Webhook is { } webhookOptions
            ? await StartWebhookAsync(app.Services, options, webhookOptions, cancellation)
            : null;
        if (options.Webhook is not null && webhook is null)
        {
            return 1;
        }

        var bound = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        var host = options.ListenAddress.Equals(IPAddress.Any) ? "127.0.0.1" : options.ListenAddress.Equals(IPAddress.IPv6Any) ? "[::1]" : bound.Host;
        var address = $"https://{host}:{grpcListener!.IPEndPoint!.Port}";
        var operatorConfig = app.Services.GetRequiredService<ControlPlaneCredentials>().EnsureOperatorCredential(address);
        var config = app.Services.GetRequiredService<ConfigStore>().Current;
        app.Services.GetRequiredService<ConfigDistributor>(); // follows config changes and renewals from the start
        var rotation = app.Services.GetRequiredService<CaRotation>().State;
        var policySource = app.Services.GetRequiredService<IPolicySource>();

        Console.Out.WriteLine($"ztm-controlplane: CA {origin.ToString().ToLowerInvariant()} in {caStore.Location} (trust domain {options.TrustDomain})");
        Console.Out.WriteLine($"ztm-controlplane: trust bundle {caStore.BundleLocation}");
        if (rotation.Phase != RotationPhase.None)
        {
            Console.Out.WriteLine($"ztm-controlplane: CA rotation {CaRotation.Name(rotation.Phase)} since {rotation.PhaseSince:O} (bundle {rotation.BundleSequence}): resumed; ztmctl ca status shows what it waits for");
        }
        Console.Out.WriteLine($"ztm-controlplane: operator config {options.OperatorConfigPath} (credential {operatorConfig.CertificatePath})");
        Console.Out.WriteLine($"ztm-controlplane: config {config.Version}: {config.Resources.Count} policy resource(s) from {policySource.Location}, {config.Revocations.Count} revocation(s)");
        Console.Out.WriteLine($"ztm-controlplane: listening on {address}");
        Console.Out.WriteLine($"ztm-controlplane: metrics listening on http://{host}:{metricsListener!.IPEndPoint!.Port}{MetricsEndpoint.Path}");
        if (webhook is not null)
        {
            Console.Out.WriteLine($"ztm-controlplane: injection webhook on https://{host}:{webhook.Port}{AdmissionWebhook.Path} (certificate for {string.Join(", ", options.Webhook!.DnsNames)}; config {options.Webhook.InjectionConfigPath})");
        }
        if (options.Kubernetes)
        {
            Console.Out.WriteLine($"ztm-controlplane: Kubernetes API {KubernetesAccess.Location(app.Services.GetRequiredService<k8s.IKubernetes>())}: sidecars may prove who they are with a projected service-account token for audience '{options.TokenAudience}' (TokenReview)");
            Console.Out.WriteLine($"ztm-controlplane: replica {options.LeaderElection.Identity}: singleton work while holding Lease {ownNamespace}/{options.LeaderElection.LeaseName} (lease {Durations.Format(options.LeaderElection.LeaseDuration)}, renew deadline {Durations.Format(options.LeaderElection.RenewDeadline)}, retry {Durations.Format(options.LeaderElection.RetryPeriod)}); revocations in ConfigMap {ownNamespace}/{ConfigMapRevocationStore.Name}");
            Console.Out.WriteLine("ztm-controlplane: service registry: the cluster's Services, EndpointSlices and Pods (sidecars' registrations are heartbeats only)");
        }
        if (options.WebhookConfiguration is { } name)
        {
            Console.Out.WriteLine($"ztm-controlplane: keeping the caBundle of MutatingWebhookConfiguration {name} and ConfigMap {RootConfigMapPublisher.Name} in namespaces labelled ztm.dev/inject=enabled current (while leading)");
        }
        Console.Out.Flush();

        await app.WaitForShutdownAsync(cancellation);
        return 0;
    }

    /// <summary>The injection webhook's own HTTPS listener on the gRPC listener's address; null (after one line) when it cannot listen.</summary>
    private static async Task<WebhookServer?> StartWebhookAsync(IServiceProvider services, ControlPlaneOptions options, WebhookOptions webhook, CancellationToken cancellation)
    {
        var handler = new AdmissionWebhook(
            new SidecarInjector(webhook.Injection, options.Namespace),
            services.GetRequiredService<ControlPlaneMetrics>(),
            services.GetRequiredService<ILogger<AdmissionWebhook>>());
        var certificate = new WebhookCertificate(services.GetRequiredService<CertificateAuthority>(), webhook.DnsNames);
        try
        {
            return await WebhookServer.StartAsync(options.ListenAddress, webhook.Port, handler, certificate, logging => logging.AddMeshConsole(), cancellation);
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"ztm-controlplane: cannot listen on {options.ListenAddress}:{webhook.Port} (--webhook-port): {e.Message}");
            return null;
        }
    }
}
