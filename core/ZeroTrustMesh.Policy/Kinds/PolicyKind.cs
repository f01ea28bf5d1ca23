using System.Text.Json;
using System.Text.Json.Nodes;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// Everything the mesh knows about one kind of policy resource, in one place: its name, how its <c>spec</c> is read
/// (from a neutral node tree: YAML files, Kubernetes custom resources and the config stream all become one), how a
/// resource is validated, and how its <c>spec</c> is written back as canonical JSON — the typed form in which the control
/// plane sends a validated resource to sidecars, which read it with the same reader and never see YAML. Which workloads a
/// resource applies to is <see cref="PolicyResource.Selector"/>, decided once in <see cref="PolicyResource.AppliesTo(WorkloadRef)"/>.
/// How a sidecar enforces a kind is its inbound stage, registered next to this descriptor on the sidecar's side.
/// Adding a kind: a folder under <c>Kinds/</c> with the model records and a <see cref="PolicyKind{TResource}"/>, plus
/// one line in <see cref="PolicyKinds.Builtin"/>.
/// </summary>
public abstract class PolicyKind
{
    /// <summary>The <c>kind:</c> of its documents, e.g. <c>AuthorizationPolicy</c>.</summary>
    public abstract string Name { get; }

    /// <summary>Whether a document must have a <c>spec</c> (PeerAuthentication, like Istio's, may omit it).</summary>
    public virtual bool RequiresSpec => true;

    /// <summary>
    /// Whether sidecars receive resources of this kind (they enforce it with an inbound stage). False for a kind the
    /// control plane applies itself (AnomalyPolicy): sidecars get what it decides, and would NACK a kind they cannot enforce.
    /// </summary>
    public virtual bool SentToSidecars => true;

    public abstract Type ResourceType { get; }

    /// <summary>
    /// Reads a resource from its <c>spec</c> (null when absent), reporting wrong shapes, unknown fields and wrong types to
    /// <paramref name="reader"/>'s errors and carrying on, so that validation can still report the rest.
    /// </summary>
    public abstract PolicyResource Read(ResourceMetadata metadata, JsonObject? spec, SpecReader reader);

    /// <summary>Writes the resource's <c>spec</c> as canonical JSON (an object), which <see cref="Read"/> reads back to the same resource.</summary>
    public abstract void WriteSpec(PolicyResource resource, Utf8JsonWriter json);

    /// <summary>Checks one resource's values (its metadata and selector are checked already); every error, never the first only.</summary>
    public abstract void Validate(PolicyResource resource, ErrorSink errors);

    /// <summary>Checks limits across every resource of this kind in a set (e.g. a total number of rules).</summary>
    public virtual void ValidateSet(IReadOnlyList<PolicyDocument> documents, List<PolicyError> errors)
    {
    }

    /// <summary>The resource in its wire form: the whole document (<c>apiVersion</c>, <c>kind</c>, <c>metadata</c>, <c>spec</c>) as canonical JSON, UTF-8.</summary>
    public byte[] ToWire(PolicyResource resource) => ResourceWriter.Write(this, resource);

    /// <summary>Reads a resource of this kind from its wire form.</summary>
    /// <exception cref="FormatException">The bytes are not JSON, not a document of this kind, or not one its reader accepts.</exception>
    public PolicyResource FromWire(ReadOnlySpan<byte> utf8)
    {
        JsonNode? document;
        try
        {
            document = JsonNode.Parse(utf8);
        }
        catch (JsonException e)
        {
            throw new FormatException($"a {Name} that is not JSON: {e.Message}", e);
        }
        var errors = new List<PolicyError>();
        var resource = ResourceReader.Read(new PolicyKinds([this]), document, new ErrorSink(errors, ""));
        return resource is not null && errors.Count == 0 ? resource
            : throw new FormatException($"not a {Name} this reader accepts: {string.Join("; ", errors)}");
    }

    public override string ToString() => Name;
}

/// <summary>A kind whose resources are <typeparamref name="TResource"/>.</summary>
public abstract class PolicyKind<TResource> : PolicyKind
    where TResource : PolicyResource
{
    public sealed override Type ResourceType => typeof(TResource);

    public sealed override PolicyResource Read(ResourceMetadata metadata, JsonObject? spec, SpecReader reader) => ReadSpec(metadata, spec, reader);

    public sealed override void WriteSpec(PolicyResource resource, Utf8JsonWriter json) => WriteSpec((TResource)resource, json);

    public sealed override void Validate(PolicyResource resource, ErrorSink errors) => Validate((TResource)resource, errors);

    protected abstract TResource ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader);

    protected abstract void WriteSpec(TResource resource, Utf8JsonWriter json);

    protected abstract void Validate(TResource resource, ErrorSink errors);
}
