namespace ZeroTrustMesh.Policy.Validation;

/// <summary>
/// One problem in a policy document set. <see cref="Location"/> is <c>source#document path</c>, e.g.
/// <c>policies.yaml#2 spec.rules[0].from[1].source.principals[0]</c>; documents are numbered from 1 in file order.
/// </summary>
public sealed record PolicyError(string Location, string Message)
{
    public override string ToString() => string.IsNullOrEmpty(Location) ? Message : $"{Location}: {Message}";
}

/// <summary>Thrown where a whole set is refused (compile, load); carries every error, not just the first.</summary>
public sealed class PolicyValidationException : Exception
{
    public PolicyValidationException(IReadOnlyList<PolicyError> errors)
        : base(Format(errors))
    {
        Errors = errors;
    }

    public PolicyValidationException()
        : this([])
    {
    }

    public PolicyValidationException(string message)
        : this([new PolicyError("", message)])
    {
    }

    public PolicyValidationException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errors = [new PolicyError("", message)];
    }

    public IReadOnlyList<PolicyError> Errors { get; }

    private static string Format(IReadOnlyList<PolicyError> errors) =>
        errors.Count switch
        {
            0 => "The policy set is invalid.",
            1 => $"The policy set is invalid: {errors[0]}",
            _ => $"The policy set is invalid ({errors.Count} errors):\n  " + string.Join("\n  ", errors),
        };
}

/// <summary>Collects errors under a location prefix (the document) so that nested checks only name their own part of the path.</summary>
public sealed class ErrorSink(List<PolicyError> errors, string document)
{
    public int Count => errors.Count;

    public void Add(string path, string message) =>
        errors.Add(new PolicyError(path.Length == 0 ? document : $"{document} {path}", message));
}
