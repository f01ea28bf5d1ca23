using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// Everything the mesh knows about one kind of policy resource, in one place: its name, how its <c>spec</c> is read
/// (from a neutral node tree: YAML files and Kubernetes custom resources both become one), how a resource is validated,
/// and its typed wire form (how the control plane sends a validated resource to sidecars, which read no YAML). Which
/// workloads a resource applies to is <see cref="PolicyResource.Selector"/>, decided once in
/// <see cref="PolicyResource.AppliesTo(WorkloadRef)"/>. How a sidecar enforces a kind is its inbound stage, registered
/// next to this descriptor on the sidecar's side.
/// Adding a kind: a folder under <c>Kinds/</c> with the model records and a <see cref="PolicyKind{TResource}"/>, plus
/// one line in <see cref="PolicyKinds.Builtin"/>.
/// </summary>
public abstract class PolicyKind
{
    /// <summary>The <c>kind:</c> of its documents, e.g. <c>AuthorizationPolicy</c>.</summary>
    public abstract string Name { get; }

    /// <summary>Whether a document must have a <c>spec</c> (PeerAuthentication, like Istio's, may omit it).</summary>
    public virtual bool RequiresSpec => true;

    public abstract Type ResourceType { get; }

    /// <summary>
    /// Reads a resource from its <c>spec</c> (null when absent), reporting wrong shapes, unknown fields and wrong types to
    /// <paramref name="reader"/>'s errors and carrying on, so that validation can still report the rest.
    /// </summary>
    public abstract PolicyResource Read(ResourceMetadata metadata, JsonObject? spec, SpecReader reader);

    /// <summary>Checks one resource's values (its metadata and selector are checked already); every error, never the first only.</summary>
    public abstract void Validate(PolicyResource resource, ErrorSink errors);

    /// <summary>Checks limits across every resource of this kind in a set (e.g. a total number of rules).</summary>
    public virtual void ValidateSet(IReadOnlyList<PolicyDocument> documents, List<PolicyError> errors)
    {
    }

    /// <summary>The resource in its wire form: the model as JSON (UTF-8), written by a source-generated serializer.</summary>
    public abstract byte[] ToWire(PolicyResource resource);

    /// <exception cref="JsonException">The bytes are not this kind's wire form.</exception>
    public abstract PolicyResource FromWire(ReadOnlySpan<byte> utf8);

    public override string ToString() => Name;
}

/// <summary>A kind whose resources are <typeparamref name="TResource"/>; the wire form comes from its source-generated JSON metadata.</summary>
public abstract class PolicyKind<TResource>(JsonTypeInfo<TResource> wire) : PolicyKind
    where TResource : PolicyResource
{
    public sealed override Type ResourceType => typeof(TResource);

    public sealed override PolicyResource Read(ResourceMetadata metadata, JsonObject? spec, SpecReader reader) => ReadSpec(metadata, spec, reader);

    public sealed override void Validate(PolicyResource resource, ErrorSink errors) => Validate((TResource)resource, errors);

    public sealed override byte[] ToWire(PolicyResource resource) => JsonSerializer.SerializeToUtf8Bytes((TResource)resource, wire);

    public sealed override PolicyResource FromWire(ReadOnlySpan<byte> utf8) =>
        JsonSerializer.Deserialize(utf8, wire) ?? throw new JsonException($"a {Name} cannot be null");

    protected abstract TResource ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader);

    protected abstract void Validate(TResource resource, ErrorSink errors);
}
