using Microsoft.Extensions.Logging;

namespace ZeroTrustMesh.CommandLine;

/// <summary>The log format every long-running ZeroTrustMesh process writes: one line per event, UTC timestamps.</summary>
public static class MeshLogging
{
    /// <summary>
    /// Replaces the default providers with single-line console output, and keeps the framework's own categories at
    /// Warning so that what the process prints is its own events.
    /// </summary>
    public static ILoggingBuilder AddMeshConsole(this ILoggingBuilder logging)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        logging.AddFilter("Microsoft", LogLevel.Warning);
        // Off entirely, not at Warning: ASP.NET Core's hosting starts an Activity (parsing traceparent) and pushes a
        // log scope (an AsyncLocal, which every await of the request then carries) for each request whenever this
        // category is enabled at any level, only to correlate "Request starting/finished" lines nobody prints.
        logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        logging.AddFilter("System.Net.Http", LogLevel.Warning);
        logging.AddFilter("Grpc", LogLevel.Warning);
        return logging;
    }
}
