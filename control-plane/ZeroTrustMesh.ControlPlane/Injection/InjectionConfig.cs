using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.ControlPlane.Injection;

/// <summary>Requests and limits of the injected containers, as Kubernetes quantities ("50m", "64Mi").</summary>
internal sealed class InjectionResources
{
    public Dictionary<string, string> Requests { get; init; } = [];

    public Dictionary<string, string> Limits { get; init; } = [];
}

/// <summary>
/// The sidecar's tamper-evident decision log (<c>--decision-log</c>), off unless enabled: it writes on every request.
/// Kept on an emptyDir (lost with the pod; <see cref="SizeLimit"/> caps it) or on a PersistentVolumeClaim
/// (<see cref="ClaimName"/>: one claim for every injected pod, so ReadWriteMany, or a workload of one replica).
/// </summary>
internal sealed class InjectionDecisionLog
{
    public bool Enabled { get; init; }

    /// <summary>The emptyDir's size limit, a quantity; empty: none.</summary>
    public string SizeLimit { get; init; } = "";

    /// <summary>A PersistentVolumeClaim in the pod's namespace instead of an emptyDir; empty: an emptyDir.</summary>
    public string ClaimName { get; init; } = "";
}

/// <summary>
/// What the injector puts into a pod (<c>/etc/ztm/injection/config.json</c>, rendered by the chart from its values).
/// Read and validated as a whole at start: every error is reported, and the control plane does not start with a
/// config it would inject wrongly.
/// </summary>
internal sealed class InjectionConfig
{
    public string Image { get; init; } = "";

    public string ImagePullPolicy { get; init; } = "IfNotPresent";

    public string ControlPlaneAddress { get; init; } = "";

    public string TrustDomain { get; init; } = SpiffeId.DefaultTrustDomain;

    public string TokenAudience { get; init; } = "ztm-controlplane";

    public long ProxyUid { get; init; } = 1337;

    public InjectionResources Resources { get; init; } = new();

    public List<int> ExcludeInboundPorts { get; init; } = [];

    public List<int> ExcludeOutboundPorts { get; init; } = [];

    public List<string> ExcludeOutboundIPRanges { get; init; } = [];

    public InjectionDecisionLog DecisionLog { get; init; } = new();

    private static readonly JsonSerializerOptions ReadOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        PropertyNameCaseInsensitive = false,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>Reads and validates <paramref name="path"/>; <paramref name="errors"/> lists every problem (then the result is null).</summary>
    public static InjectionConfig? Load(string path, out IReadOnlyList<string> errors)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors = [$"cannot read {path}: {e.Message}"];
            return null;
        }
        return Parse(text, out errors);
    }

    /// <summary>Parses and validates a config document; <paramref name="errors"/> lists every problem (then the result is null).</summary>
    public static InjectionConfig? Parse(string json, out IReadOnlyList<string> errors)
    {
        InjectionConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<InjectionConfig>(json, ReadOptions);
        }
        catch (JsonException e)
        {
            errors = [$"not a valid injection config: {e.Message}"];
            return null;
        }
        if (config is null)
        {
            errors = ["not a valid injection config: null"];
            return null;
        }
        errors = config.Validate();
        return errors.Count == 0 ? config : null;
    }

    /// <summary>Every problem of this config, by field.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Image))
        {
            errors.Add("image: required (e.g. \"ztm-sidecar:0.1.0\")");
        }
        if (ImagePullPolicy is not ("Always" or "IfNotPresent" or "Never"))
        {
            errors.Add($"imagePullPolicy: '{ImagePullPolicy}' is not Always, IfNotPresent or Never");
        }
        if (!Uri.TryCreate(ControlPlaneAddress, UriKind.Absolute, out var address) || address.Scheme != Uri.UriSchemeHttps || address.AbsolutePath != "/")
        {
            errors.Add($"controlPlaneAddress: '{ControlPlaneAddress}' is not an https:// address without a path (e.g. \"https://ztm-controlplane.ztm-system.svc:15012\")");
        }
        if (!SpiffeId.TryParse(SpiffeId.Scheme + TrustDomain, out _, out var tdError))
        {
            errors.Add($"trustDomain: '{TrustDomain}' is invalid: {tdError}");
        }
        if (string.IsNullOrWhiteSpace(TokenAudience))
        {
            errors.Add("tokenAudience: required (e.g. \"ztm-controlplane\")");
        }
        if (ProxyUid is < 1 or > int.MaxValue)
        {
            errors.Add($"proxyUid: {ProxyUid} is not a non-root UID (1..{int.MaxValue})");
        }
        ValidateResources("resources.requests", Resources.Requests, errors);
        ValidateResources("resources.limits", Resources.Limits, errors);
        for (var i = 0; i < ExcludeInboundPorts.Count; i++)
        {
            CheckPort($"excludeInboundPorts[{i}]", ExcludeInboundPorts[i], errors);
        }
        for (var i = 0; i < ExcludeOutboundPorts.Count; i++)
        {
            CheckPort($"excludeOutboundPorts[{i}]", ExcludeOutboundPorts[i], errors);
        }
        for (var i = 0; i < ExcludeOutboundIPRanges.Count; i++)
        {
            if (!InjectionAnnotations.TryParseCidr(ExcludeOutboundIPRanges[i], out _))
            {
                errors.Add($"excludeOutboundIPRanges[{i}]: '{ExcludeOutboundIPRanges[i]}' is not a CIDR like 10.0.0.0/8 (host bits must be zero)");
            }
        }
        if (DecisionLog.SizeLimit.Length > 0 && !Quantities.IsValid(DecisionLog.SizeLimit))
        {
            errors.Add($"decisionLog.sizeLimit: '{DecisionLog.SizeLimit}' is not a Kubernetes quantity (e.g. 1Gi)");
        }
        if (DecisionLog.ClaimName.Length > 0 && !Kubernetes.KubernetesNames.IsSubdomain(DecisionLog.ClaimName))
        {
            errors.Add($"decisionLog.claimName: '{DecisionLog.ClaimName}' is not a PersistentVolumeClaim name (a DNS-1123 subdomain)");
        }
        if (DecisionLog.ClaimName.Length > 0 && DecisionLog.SizeLimit.Length > 0)
        {
            errors.Add("decisionLog: sizeLimit is the emptyDir's, and claimName replaces the emptyDir: set one of them");
        }
        return errors;
    }

    private static void ValidateResources(string field, Dictionary<string, string> values, List<string> errors)
    {
        foreach (var (name, value) in values)
        {
            if (name is not ("cpu" or "memory" or "ephemeral-storage"))
            {
                errors.Add($"{field}.{name}: unknown resource (cpu, memory, ephemeral-storage)");
            }
            else if (!Quantities.IsValid(value))
            {
                errors.Add($"{field}.{name}: '{value}' is not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi, 1G)");
            }
        }
    }

    private static void CheckPort(string field, int port, List<string> errors)
    {
        if (port is < 1 or > 65535)
        {
            errors.Add($"{field}: {port} is not a port (1..65535)");
        }
    }
}
