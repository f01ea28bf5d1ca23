namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>
/// The redaction of one operation's responses with one status: the rules' pointers and, when a response schema is
/// given, its declarations ("undeclared fields" mode), compiled once when a config is applied. Immutable and
/// thread-safe; each response is redacted by a <see cref="JsonRedaction"/> of its own.
/// </summary>
internal sealed class ResponseRedactor
{
    private ResponseRedactor(RuleState? rules, SchemaState? schema)
    {
        Rules = rules;
        Schema = schema;
    }

    /// <summary>Where the whole body stands against the rules; null without rules.</summary>
    public RuleState? Rules { get; }

    /// <summary>What the schema declares for the whole body; null without a schema, or when it declares nothing (a free-form body).</summary>
    public SchemaState? Schema { get; }

    /// <param name="rules">Values to remove or mask, by JSON Pointer with <c>*</c> wildcards.</param>
    /// <param name="declaredSchema">
    /// Null, or the response body's JSON Schema 2020-12 document, self-contained (local <c>$ref</c>s only): every
    /// object member and array element it does not declare is removed (see <see cref="SchemaState"/>).
    /// </param>
    /// <exception cref="ArgumentException">A pointer is not a JSON Pointer to a member or element, or the schema cannot be used (every problem, with its location).</exception>
    public static ResponseRedactor Compile(IReadOnlyList<RedactionRule> rules, string? declaredSchema)
    {
        ArgumentNullException.ThrowIfNull(rules);
        List<string>? errors = null;
        RuleState? ruleStates = null;
        SchemaState? schema = null;
        try
        {
            ruleStates = RuleState.Compile(rules);
        }
        catch (ArgumentException e)
        {
            (errors ??= []).Add(e.Message);
        }
        try
        {
            schema = declaredSchema is null ? null : SchemaState.Compile(declaredSchema);
        }
        catch (ArgumentException e)
        {
            (errors ??= []).Add(e.Message);
        }
        return errors is null ? new ResponseRedactor(ruleStates, schema) : throw new ArgumentException(string.Join("; ", errors));
    }
}
