using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Model;

/// <summary>
/// A resource and where it came from (<c>policies.yaml#2</c>: file and 1-based document number), so that every
/// error can name its place. Resources that arrive over the API without a file use their key as the source.
/// </summary>
public sealed record PolicyDocument(string Source, int Index, PolicyResource Resource)
{
    public string Location => Index > 0 ? $"{Source}#{Index}" : Source;

    /// <summary>The document's own text as the operator wrote it (one YAML document), for storing and showing; null when it had none.</summary>
    public string? Text { get; init; }

    public static PolicyDocument FromResource(PolicyResource resource) =>
        new($"{resource.Kind}/{resource.Metadata.Namespace}/{resource.Metadata.Name}", 0, resource);
}

/// <summary>The outcome of reading and/or validating a set: the documents read and every error found.</summary>
public sealed record PolicySetResult(ImmutableArray<PolicyDocument> Documents, ImmutableArray<PolicyError> Errors)
{
    public bool IsValid => Errors.IsEmpty;

    /// <summary>The documents, or a <see cref="PolicyValidationException"/> listing every error.</summary>
    public ImmutableArray<PolicyDocument> GetValidDocuments() =>
        IsValid ? Documents : throw new PolicyValidationException(Errors);
}
