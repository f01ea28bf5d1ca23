using Google.Protobuf;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Proto;

/// <summary>
/// The one mapping between policy resources and their wire form (<see cref="V1.PolicyResource"/>): the kind's name, the
/// resource's key, and the document as the kind writes it from the validated model (canonical JSON). The control plane
/// writes what it validated; a sidecar reads it back with the same kind's reader, without YAML.
/// </summary>
public static class PolicyMapping
{
    /// <exception cref="ArgumentException">The resource's kind is not one of <paramref name="kinds"/>.</exception>
    public static V1.PolicyResource ToProto(this PolicyResource resource, PolicyKinds kinds) => new()
    {
        Kind = resource.Kind,
        Namespace = resource.Metadata.Namespace,
        Name = resource.Metadata.Name,
        Document = UnsafeByteOperations.UnsafeWrap(KindOf(resource.Kind, kinds).ToWire(resource)),
    };

    /// <summary>The model of a received resource.</summary>
    /// <exception cref="FormatException">An unknown kind, a model that is not the kind's, or one whose key differs from the message's.</exception>
    public static PolicyResource FromProto(V1.PolicyResource resource, PolicyKinds kinds)
    {
        ArgumentNullException.ThrowIfNull(resource);
        var key = $"{resource.Kind} '{resource.Namespace}/{resource.Name}'";
        if (!kinds.TryGet(resource.Kind, out var kind))
        {
            throw new FormatException($"{key}: this sidecar does not know the kind '{resource.Kind}' (it knows {kinds.Names})");
        }
        PolicyResource model;
        try
        {
            model = kind.FromWire(resource.Document.Span);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{key}: {e.Message}", e);
        }
        if (model.Metadata.Namespace != resource.Namespace || model.Metadata.Name != resource.Name)
        {
            throw new FormatException($"{key}: the model names {model.Key}");
        }
        return model;
    }

    private static PolicyKind KindOf(string name, PolicyKinds kinds) =>
        kinds.TryGet(name, out var kind) ? kind : throw new ArgumentException($"unknown kind '{name}' (known: {kinds.Names})", nameof(name));
}
