namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>What a redaction rule does to the value its pointer names.</summary>
internal enum RedactionAction
{
    /// <summary>The member (name and value) or array element is left out of the response.</summary>
    Remove,

    /// <summary>The value, whatever its type, is replaced with the JSON string <c>"****"</c>; the member stays.</summary>
    Mask,
}

/// <summary>
/// One value to redact in a JSON response: <paramref name="Pointer"/> is an RFC 6901 JSON Pointer (<c>~0</c> for
/// <c>~</c>, <c>~1</c> for <c>/</c>) in which a segment <c>*</c> matches any one property name or array index:
/// <c>/password</c>, <c>/users/*/ssn</c>, <c>/*/token</c>.
/// </summary>
internal sealed record RedactionRule(string Pointer, RedactionAction Action);
