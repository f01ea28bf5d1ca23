using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Tests;

/// <summary>
/// The control plane's parts on one data directory, composed as <c>ztm-controlplane</c> composes them
/// (<see cref="ControlPlaneServices"/>), with the clock a test gives; the hosted services are started, and stopped
/// with <see cref="StopAsync"/> or disposal. Logs go nowhere unless <paramref name="logs"/> collects them.
/// </summary>
internal sealed class ControlPlaneParts : IAsyncDisposable
{
    private readonly ServiceProvider _services;
    private bool _stopped;

    private ControlPlaneParts(ServiceProvider services) => _services = services;

    public static ControlPlaneOptions Options(string dataDir) => new()
    {
        DataDir = dataDir,
        ListenAddress = IPAddress.Loopback,
        Port = 0,
        TrustDomain = SpiffeId.DefaultTrustDomain,
        SvidTtl = TimeSpan.FromHours(1),
        JoinTokenTtl = TimeSpan.FromMinutes(10),
        OperatorConfigPath = Path.Combine(dataDir, "config"),
    };

    public static async Task<ControlPlaneParts> StartAsync(string dataDir, TimeProvider time, Action<IServiceCollection>? replace = null, ILoggerProvider? logs = null, ControlPlaneOptions? options = null)
    {
        options ??= Options(dataDir);
        var caStore = new FileCaStore(options, time);
        var (ca, _) = caStore.LoadOrCreate();
        CaRotation.Resume(ca, caStore, options);
        var services = new ServiceCollection();
        services.AddLogging(l =>
        {
            if (logs is not null)
            {
                l.AddProvider(logs);
            }
        });
        services.AddSingleton(options);
        services.AddSingleton(time);
        services.AddSingleton<ICaStore>(caStore);
        services.AddSingleton(ca);
        replace?.Invoke(services);
        services.AddStandaloneState(options).AddControlPlane();
        var parts = new ControlPlaneParts(services.BuildServiceProvider());
        foreach (var hosted in parts._services.GetServices<IHostedService>())
        {
            await hosted.StartAsync(CancellationToken.None);
        }
        return parts;
    }

    public T Get<T>()
        where T : notnull => _services.GetRequiredService<T>();

    /// <summary>Stops the hosted services (a control plane shutting down), once.</summary>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }
        _stopped = true;
        foreach (var hosted in _services.GetServices<IHostedService>().Reverse())
        {
            await hosted.StopAsync(CancellationToken.None);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _services.DisposeAsync();
    }
}

/// <summary>A test on a data directory of its own, starting the control plane's parts on it as often as it likes (restarts).</summary>
public abstract class ControlPlanePartsTest : IAsyncLifetime
{
    /// <summary>A valid policy that lets namespace shop call orders.</summary>
    internal const string OrdersFromShop = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata:
          name: orders-from-shop
          namespace: shop
        spec:
          selector:
            service: orders
          action: ALLOW
          rules:
            - from:
                - source:
                    namespaces: ["shop"]
        """;

    private readonly List<ControlPlaneParts> _started = [];

    protected ControlPlanePartsTest(string name) => DataDir = Directory.CreateTempSubdirectory($"ztm-{name}-").FullName;

    protected string DataDir { get; }

    protected Microsoft.Extensions.Time.Testing.FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 24, 12, 0, 0, TimeSpan.Zero));

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var parts in _started)
        {
            await parts.DisposeAsync();
        }
        Directory.Delete(DataDir, recursive: true);
    }

    /// <summary>A control plane on <see cref="DataDir"/>, stopped and disposed with the test.</summary>
    internal async Task<ControlPlaneParts> StartPartsAsync(Action<IServiceCollection>? replace = null)
    {
        var parts = await ControlPlaneParts.StartAsync(DataDir, Time, replace);
        _started.Add(parts);
        return parts;
    }
}
