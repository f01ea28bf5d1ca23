using System.Text.Json;
using Json.Schema;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>One way a JSON value fails its schema: where in the value (a JSON pointer, "" for the whole value) and why.</summary>
public readonly record struct SchemaError(string Location, string Reason)
{
    public override string ToString() => $"{(Location.Length == 0 ? "/" : Location)}: {Reason}";
}

/// <summary>
/// A JSON Schema 2020-12 document compiled once with JsonSchema.Net (8.0.5, MIT), evaluated many times; immutable and
/// thread-safe. The one home of the validator's settings, shared by the control plane (which refuses a schema it cannot
/// compile at apply), the sidecar (which validates requests with it) and the conformance tests. Formats are
/// annotations, as 2020-12 says by default; each schema has its own registry, so <c>$id</c>s of two documents never meet,
/// and nothing is ever fetched.
/// A schema within the common keyword subset is also compiled into a <see cref="CompiledSchema"/>, which decides the
/// verdict without allocating (JsonSchema.Net 8 allocates per keyword and per pointer: ~340 KB for a 4 KiB body);
/// JsonSchema.Net still evaluates every schema outside the subset, every value the compiled form is unsure of, and
/// lists the errors of every invalid value, so the errors are the same whichever decided.
/// </summary>
public sealed class ApiSchema
{
    // A valid request (the common case) is decided with the flag output, which stops at the first failure and collects
    // no annotations; only an invalid one is evaluated again for the list of every error.
    private static readonly EvaluationOptions Verdict = new() { OutputFormat = OutputFormat.Flag };
    private static readonly EvaluationOptions ErrorList = new() { OutputFormat = OutputFormat.List };

    private readonly JsonSchema _schema;
    private readonly CompiledSchema? _compiled;

    private ApiSchema(JsonSchema schema, CompiledSchema? compiled)
    {
        _schema = schema;
        _compiled = compiled;
    }

    /// <summary>Whether the schema is within the compiled subset (its verdicts are decided without JsonSchema.Net).</summary>
    public bool IsCompiled => _compiled is not null;

    /// <summary>Compiles <paramref name="json"/>, a self-contained schema.</summary>
    /// <exception cref="ArgumentException">Not JSON, or a schema the library cannot compile; the message says why.</exception>
    public static ApiSchema Compile(string json, bool refIgnoresSiblings = false)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            var options = new BuildOptions
            {
                SchemaRegistry = new SchemaRegistry(),
                Dialect = refIgnoresSiblings ? Dialect.Draft202012.With([], refIgnoresSiblingKeywords: true) : Dialect.Draft202012,
            };
            var schema = JsonSchema.Build(document.RootElement.Clone(), options);
            return new ApiSchema(schema, refIgnoresSiblings ? null : CompiledSchema.TryCompile(document.RootElement));
        }
        catch (Exception e) when (e is JsonException or JsonSchemaException or RefResolutionException or InvalidOperationException or ArgumentException or FormatException or KeyNotFoundException)
        {
            throw new ArgumentException(e.Message, nameof(json), e);
        }
    }

    /// <summary>Whether <paramref name="instance"/> is valid; adds every error to <paramref name="errors"/>.</summary>
    public bool Validate(JsonElement instance, List<SchemaError>? errors) => Validate(instance, errors, _compiled?.Check(instance));

    /// <summary>Every error of <paramref name="instance"/>; empty when it is valid, and then nothing is allocated when the compiled form decided.</summary>
    public IReadOnlyList<SchemaError> Errors(JsonElement instance)
    {
        var compiled = _compiled?.Check(instance);
        if (compiled == SchemaOutcome.Valid)
        {
            return [];
        }
        var errors = new List<SchemaError>();
        return Validate(instance, errors, compiled) ? [] : errors;
    }

    private bool Validate(JsonElement instance, List<SchemaError>? errors, SchemaOutcome? compiled)
    {
        switch (compiled)
        {
            case SchemaOutcome.Valid:
                return true;
            case SchemaOutcome.Invalid when errors is null:
                return false;
        }
        EvaluationResults results;
        try
        {
            // Known invalid: straight to the list of errors (the flag pass would only say so again).
            results = _schema.Evaluate(instance, compiled == SchemaOutcome.Invalid ? ErrorList : Verdict);
            if (!results.IsValid && errors is not null && compiled != SchemaOutcome.Invalid)
            {
                results = _schema.Evaluate(instance, ErrorList);
            }
        }
        catch (RefResolutionException e)
        {
            // References resolve when first followed; a schema compiled by the control plane has none that do not.
            errors?.Add(new SchemaError("", $"the schema has a reference that cannot be resolved: {e.Message}"));
            return false;
        }
        if (results.IsValid || errors is null)
        {
            return results.IsValid;
        }
        var before = errors.Count;
        Collect(results, errors);
        if (errors.Count == before)
        {
            errors.Add(new SchemaError("", "does not match the schema"));
        }
        return false;
    }

    /// <summary>The compiled form's own verdict (null: the schema is outside the subset), for the differential tests.</summary>
    internal SchemaOutcome? CheckCompiled(JsonElement instance) => _compiled?.Check(instance);

    /// <summary>JsonSchema.Net's own verdict, for the differential tests.</summary>
    internal bool CheckReference(JsonElement instance) => _schema.Evaluate(instance, Verdict).IsValid;

    private static void Collect(EvaluationResults results, List<SchemaError> errors)
    {
        if (results.Errors is { } own)
        {
            foreach (var (_, reason) in own)
            {
                errors.Add(new SchemaError(results.InstanceLocation.ToString(), reason));
            }
        }
        if (results.Details is { } details)
        {
            foreach (var detail in details)
            {
                Collect(detail, errors);
            }
        }
    }
}
