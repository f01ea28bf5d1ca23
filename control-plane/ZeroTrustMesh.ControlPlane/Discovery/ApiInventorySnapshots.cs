using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Discovery;

/// <summary>
/// Standalone only: keeps the API inventory across restarts in the data directory (<c>api-inventory.json</c>): loaded at
/// start, written (atomically) every <see cref="Interval"/> when it changed and once more when the stop begins and at its end. In Kubernetes each
/// replica holds what its own sidecars reported, in memory.
/// </summary>
internal sealed class ApiInventorySnapshots(ApiInventory inventory, ControlPlaneOptions options, TimeProvider time, ILogger<ApiInventorySnapshots> logger) : BackgroundService
{
    public const string FileName = "api-inventory.json";

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);

    private long _saved = -1;

    public string Path => System.IO.Path.Combine(options.DataDir, FileName);

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (File.Exists(Path))
            {
                var snapshot = JsonSerializer.Deserialize(File.ReadAllText(Path), ApiInventoryJson.Default.InventorySnapshot);
                inventory.Restore(snapshot?.Services ?? []);
                DiscoveryLog.InventoryLoaded(logger, Path, snapshot?.Services.Count ?? 0);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            // A damaged snapshot costs what it held, not the control plane: discovery starts again from what sidecars report.
            DiscoveryLog.InventoryNotLoaded(logger, Path, e.Message);
        }
        _saved = inventory.Changes;
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                Save();
            }
        }
        catch (OperationCanceledException)
        {
            // stopping: StopAsync saves once more
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        Save();
    }

    /// <summary>Writes the inventory when it changed since the last write.</summary>
    public void Save()
    {
        var changes = inventory.Changes;
        if (changes == Interlocked.Read(ref _saved))
        {
            return;
        }
        try
        {
            AtomicFile.WriteOwnerOnly(Path, JsonSerializer.Serialize(new InventorySnapshot(1, [.. inventory.Records()]), ApiInventoryJson.Default.InventorySnapshot));
            Interlocked.Exchange(ref _saved, changes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            DiscoveryLog.InventoryNotSaved(logger, Path, e.Message);
        }
    }
}

internal sealed record InventorySnapshot(int Version, List<ServiceRecord> Services);

[JsonSerializable(typeof(InventorySnapshot))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class ApiInventoryJson : JsonSerializerContext;

internal static partial class DiscoveryLog
{
    [LoggerMessage(EventId = 1950, Level = LogLevel.Information, Message = "API inventory loaded from {Path}: {Services} service(s)")]
    public static partial void InventoryLoaded(ILogger logger, string path, int services);

    [LoggerMessage(EventId = 1951, Level = LogLevel.Warning, Message = "API inventory {Path} not loaded ({Reason}): discovery starts again from what sidecars report")]
    public static partial void InventoryNotLoaded(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 1952, Level = LogLevel.Warning, Message = "API inventory not saved to {Path}: {Reason}")]
    public static partial void InventoryNotSaved(ILogger logger, string path, string reason);
}

internal static class ApiDiscoveryServices
{
    /// <summary>
    /// The API inventory as an observation consumer, the operator's <c>ApiAdmin</c> service over it, and standalone its
    /// snapshot in the data directory (in Kubernetes each replica keeps what its own sidecars report, in memory).
    /// </summary>
    public static IServiceCollection AddApiDiscovery(this IServiceCollection services, ControlPlaneOptions options)
    {
        services.AddSingleton(sp => new ApiInventory(options.ApiInventory, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<Observations.IObservationConsumer>(sp => sp.GetRequiredService<ApiInventory>());
        if (!options.Kubernetes)
        {
            services.AddHostedService(sp =>
            {
                var snapshots = ActivatorUtilities.CreateInstance<ApiInventorySnapshots>(sp);
                // Saved as soon as the stop begins, too: draining the sidecars' long-lived streams may outlast what a
                // supervisor waits for after SIGTERM, and the save at the end of the stop would then never happen.
                sp.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.Register(snapshots.Save);
                return snapshots;
            });
        }
        return services;
    }
}
