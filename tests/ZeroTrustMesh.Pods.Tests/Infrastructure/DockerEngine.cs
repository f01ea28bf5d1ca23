using System.Net.Sockets;

namespace ZeroTrustMesh.Pods.Tests.Infrastructure;

/// <summary>Whether a Docker engine answers (<c>GET /_ping</c> on <c>$DOCKER_HOST</c> or <c>/var/run/docker.sock</c>), asked once per run.</summary>
internal static class DockerEngine
{
    private static readonly Lazy<string?> Missing = new(Probe);

    /// <summary>Why the pod tests cannot run here, or null when an engine answers.</summary>
    public static string? SkipReason => Missing.Value;

    /// <summary>The newest API version the engine speaks (its <c>Api-Version</c> header), once it answered.</summary>
    public static string? ApiVersion { get; private set; }

    /// <summary>Settings Testcontainers needs here, applied before its first use.</summary>
    public static void PrepareTestcontainers(Action<string> log)
    {
        // Testcontainers asks for API 1.44 by default; Debian 12's engine (docker.io 20.10) speaks up to 1.41. Asking for
        // the engine's own version works with both (it is read once, before the first use of Testcontainers).
        if (Environment.GetEnvironmentVariable("DOCKER_API_VERSION") is null && ApiVersion is { } api
            && System.Version.TryParse(api, out var version) && version < new System.Version(1, 44))
        {
            Environment.SetEnvironmentVariable("DOCKER_API_VERSION", api);
            log($"the Docker engine speaks API {api} at most: DOCKER_API_VERSION={api} for Testcontainers");
        }
        // Ryuk's image cannot be pulled here (no registry): each test removes what it creates itself.
        DotNet.Testcontainers.Configurations.TestcontainersSettings.ResourceReaperEnabled = false;
        log("Testcontainers' resource reaper is disabled (its image cannot be pulled without a registry); the fixture removes its containers and network on dispose");
    }

    private static string? Probe()
    {
        var host = Environment.GetEnvironmentVariable("DOCKER_HOST") is { Length: > 0 } set ? set : "unix:///var/run/docker.sock";
        try
        {
            using var handler = new SocketsHttpHandler();
            Uri ping;
            if (host.StartsWith("unix://", StringComparison.Ordinal))
            {
                var path = host["unix://".Length..];
                if (!File.Exists(path))
                {
                    return $"no Docker engine answers at {host} (no such socket); start dockerd (apt-get install docker.io; .ci/run starts it)";
                }
                handler.ConnectCallback = async (_, cancellation) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellation);
                    return new NetworkStream(socket, ownsSocket: true);
                };
                ping = new Uri("http://docker/_ping");
            }
            else
            {
                ping = new Uri(new Uri(host.Replace("tcp://", "http://", StringComparison.Ordinal)), "/_ping");
            }
            using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) };
            using var response = client.GetAsync(ping).GetAwaiter().GetResult();
            ApiVersion = response.Headers.TryGetValues("Api-Version", out var versions) ? versions.FirstOrDefault() : null;
            return response.IsSuccessStatusCode ? null : $"no Docker engine answers at {host} (/_ping: {(int)response.StatusCode})";
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or TaskCanceledException or IOException)
        {
            return $"no Docker engine answers at {host} ({(e.InnerException ?? e).Message}); start dockerd (apt-get install docker.io; .ci/run starts it)";
        }
    }
}

/// <summary>A pod test: skipped, with the one reason, only where no Docker engine answers.</summary>
internal sealed class PodFactAttribute : FactAttribute
{
    public PodFactAttribute()
    {
        Skip = DockerEngine.SkipReason;
    }
}

internal static class Repository
{
    public static string Root { get; } = typeof(Repository).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
        .Cast<System.Reflection.AssemblyMetadataAttribute>().Single(a => a.Key == "RepoRoot").Value!;
}
