using System.Text.Json;

namespace ZeroTrustMesh.Sidecar.Health;

/// <summary>One of the app's own kubelet probes, as the injector found it in the pod spec (ports already numbers).</summary>
internal abstract record AppProbe(TimeSpan Timeout)
{
    public sealed record Http(TimeSpan Timeout, string PathAndQuery, int Port, bool Https, IReadOnlyList<KeyValuePair<string, string>> Headers) : AppProbe(Timeout);

    public sealed record Tcp(TimeSpan Timeout, int Port) : AppProbe(Timeout);

    public sealed record Grpc(TimeSpan Timeout, int Port, string Service) : AppProbe(Timeout);
}

/// <summary>
/// The app's kubelet probes, by the path the injector rewrote each to on the sidecar's health port
/// (<c>/app-health/{container}/{livez|readyz|startupz}</c>). Under STRICT mTLS kubelet cannot reach the app itself;
/// it asks the sidecar, which runs the original probe against the app over loopback. Read from
/// <c>ZTM_APP_PROBES</c>, in the shape of Istio's <c>ISTIO_KUBE_APP_PROBERS</c>.
/// </summary>
internal sealed class AppProbes
{
    public const string Variable = "ZTM_APP_PROBES";
    public const string PathPrefix = "/app-health/";

    /// <summary>kubelet's default when a probe names no timeout.</summary>
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(1);

    private static readonly string[] HandlerKinds = ["httpGet", "tcpSocket", "grpc"];

    public static readonly AppProbes None = new(new Dictionary<string, AppProbe>(StringComparer.Ordinal));

    private AppProbes(IReadOnlyDictionary<string, AppProbe> byPath) => ByPath = byPath;

    public IReadOnlyDictionary<string, AppProbe> ByPath { get; }

    /// <summary>Reads <paramref name="json"/>; every error is collected, each naming the probe path and field.</summary>
    public static bool TryParse(string json, out AppProbes probes, out IReadOnlyList<string> errors)
    {
        var found = new Dictionary<string, AppProbe>(StringComparer.Ordinal);
        var problems = new List<string>();
        probes = None;
        errors = problems;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            problems.Add($"not JSON: {e.Message}");
            return false;
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                problems.Add("must be a JSON object of probe path → probe");
                return false;
            }
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (!entry.Name.StartsWith(PathPrefix, StringComparison.Ordinal) || entry.Name.Length == PathPrefix.Length)
                {
                    problems.Add($"'{entry.Name}': a probe path must start with {PathPrefix}");
                    continue;
                }
                if (Read(entry.Name, entry.Value, problems) is { } probe)
                {
                    found[entry.Name] = probe;
                }
            }
        }
        if (problems.Count > 0)
        {
            return false;
        }
        probes = new AppProbes(found);
        return true;
    }

    private static AppProbe? Read(string path, JsonElement value, List<string> problems)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"{path}: must be an object with one of httpGet, tcpSocket, grpc");
            return null;
        }
        var timeout = DefaultTimeout;
        if (value.TryGetProperty("timeoutSeconds", out var seconds))
        {
            if (seconds.ValueKind != JsonValueKind.Number || !seconds.TryGetInt32(out var s) || s < 1)
            {
                problems.Add($"{path}.timeoutSeconds: must be a whole number of seconds, at least 1");
                return null;
            }
            timeout = TimeSpan.FromSeconds(s);
        }
        var kinds = HandlerKinds.Where(k => value.TryGetProperty(k, out _)).ToList();
        if (kinds.Count != 1)
        {
            problems.Add($"{path}: must have exactly one of httpGet, tcpSocket, grpc (has {(kinds.Count == 0 ? "none" : string.Join(", ", kinds))})");
            return null;
        }
        var handler = value.GetProperty(kinds[0]);
        if (handler.ValueKind != JsonValueKind.Object || Port(handler) is not { } port)
        {
            problems.Add($"{path}.{kinds[0]}.port: must be a port number 1-65535 (the injector resolves named ports)");
            return null;
        }
        switch (kinds[0])
        {
            case "tcpSocket":
                return new AppProbe.Tcp(timeout, port);
            case "grpc":
                var service = handler.TryGetProperty("service", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString()! : "";
                return new AppProbe.Grpc(timeout, port, service);
        }
        var target = handler.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : "/";
        if (!target.StartsWith('/'))
        {
            target = "/" + target; // kubelet does the same with a relative path
        }
        if (target.Any(c => char.IsControl(c) || c == ' '))
        {
            problems.Add($"{path}.httpGet.path: must not contain spaces or control characters");
            return null;
        }
        var scheme = handler.TryGetProperty("scheme", out var sc) && sc.ValueKind == JsonValueKind.String ? sc.GetString()! : "HTTP";
        if (scheme is not ("HTTP" or "HTTPS"))
        {
            problems.Add($"{path}.httpGet.scheme: must be HTTP or HTTPS, not '{scheme}'");
            return null;
        }
        var headers = new List<KeyValuePair<string, string>>();
        if (handler.TryGetProperty("httpHeaders", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var header in list.EnumerateArray())
            {
                if (header.ValueKind != JsonValueKind.Object
                    || !header.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 } n
                    || !header.TryGetProperty("value", out var v) || v.ValueKind != JsonValueKind.String)
                {
                    problems.Add($"{path}.httpGet.httpHeaders: each header needs a name and a string value");
                    return null;
                }
                headers.Add(new(n, v.GetString()!));
            }
        }
        return new AppProbe.Http(timeout, target, port, scheme == "HTTPS", headers);
    }

    private static int? Port(JsonElement handler) =>
        handler.TryGetProperty("port", out var port) && port.ValueKind == JsonValueKind.Number && port.TryGetInt32(out var n) && n is >= 1 and <= 65535 ? n : null;
}
