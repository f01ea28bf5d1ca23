using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: PeerAuthentication</c>: reader, validator and wire form. Its compiler is <see cref="PeerAuthenticationPolicy.Compile"/>;
/// the sidecar enforces the result per connection (plaintext accepted at all?) and per request (this port's mode).
/// </summary>
public sealed class PeerAuthenticationKind : PolicyKind<PeerAuthentication>
{
    public static readonly PeerAuthenticationKind Instance = new();

    private PeerAuthenticationKind()
    {
    }

    public override string Name => PeerAuthentication.KindName;

    public override bool RequiresSpec => false;

    protected override PeerAuthentication ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new PeerAuthentication(metadata, new PeerAuthenticationSpec(null, MtlsMode.Strict, []));
        }
        reader.Keys(spec, "spec", "selector", "mode", "portLevelMtls");
        var ports = reader.List(spec, "portLevelMtls", "spec", (node, path) =>
        {
            if (reader.Mapping(node, path) is not { } map)
            {
                return new PortMtls(0, MtlsMode.Strict);
            }
            reader.Keys(map, path, "port", "mode");
            var port = reader.Number(SpecReader.Child(map, "port"), $"{path}.port");
            if (port is null && !SpecReader.Has(map, "port"))
            {
                reader.Errors.Add($"{path}.port", "a port is required");
            }
            return new PortMtls(port ?? 0, Mode(reader, map, path, required: true));
        });
        return new PeerAuthentication(metadata, new PeerAuthenticationSpec(reader.Selector(spec), Mode(reader, spec, "spec", required: false), ports));
    }

    private static MtlsMode Mode(SpecReader reader, JsonObject map, string path, bool required)
    {
        switch (reader.Text(map, "mode", path))
        {
            case "STRICT":
                return MtlsMode.Strict;
            case "PERMISSIVE":
                return MtlsMode.Permissive;
            case null:
                if (required)
                {
                    reader.Errors.Add($"{path}.mode", "a mode is required: STRICT or PERMISSIVE");
                }
                return MtlsMode.Strict; // zero trust: mTLS unless told otherwise
            case var other:
                reader.Errors.Add($"{path}.mode", $"'{other}' is not a mode: use STRICT or PERMISSIVE");
                return MtlsMode.Strict;
        }
    }

    protected override void WriteSpec(PeerAuthentication resource, Utf8JsonWriter json)
    {
        ResourceWriter.Selector(json, resource.Spec.Selector);
        json.WriteString("mode", ModeName(resource.Spec.Mode));
        ResourceWriter.Objects(json, "portLevelMtls", resource.Spec.PortLevelMtls, static (json, port) =>
        {
            json.WriteNumber("port", port.Port);
            json.WriteString("mode", ModeName(port.Mode));
        });
    }

    private static string ModeName(MtlsMode mode) => mode == MtlsMode.Permissive ? "PERMISSIVE" : "STRICT";

    protected override void Validate(PeerAuthentication resource, ErrorSink errors)
    {
        var ports = resource.Spec.PortLevelMtls;
        var seen = new HashSet<int>();
        for (var i = 0; i < Checks.Length(ports); i++)
        {
            var port = ports[i].Port;
            if (port is < 1 or > PolicySyntax.MaxPortNumber)
            {
                errors.Add($"spec.portLevelMtls[{i}].port", $"{port} is not a port: it must be 1 to {PolicySyntax.MaxPortNumber}");
            }
            else if (!seen.Add(port))
            {
                errors.Add($"spec.portLevelMtls[{i}].port", $"port {port} appears twice");
            }
        }
        if (Checks.Length(ports) > 0 && resource.Spec.Selector is null)
        {
            // As in Istio: a port number means something only for one workload's ports.
            errors.Add("spec.portLevelMtls", "portLevelMtls needs a selector: ports are those of one workload");
        }
    }
}
