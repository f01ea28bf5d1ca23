using System.Collections.Frozen;
using System.Globalization;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

namespace ZeroTrustMesh.Sidecar.ApiProtection;

/// <summary>
/// One operation's response redaction by status, compiled when a config is applied (immutable). Every
/// <c>redaction</c> entry that selects the operation and covers a status applies to it, merged (a code <c>200</c>, a
/// range <c>2XX</c>, <c>default</c>); <c>removeUndeclared</c> uses the operation's most specific declared JSON response
/// schema for that status (none declared: only the pointers apply). A status no entry covers is not redacted.
/// </summary>
internal sealed class ApiRedactions
{
    private readonly FrozenDictionary<string, ResponseRedactor> _byKey;

    private ApiRedactions(FrozenDictionary<string, ResponseRedactor> byKey) => _byKey = byKey;

    /// <summary>Null when no entry selects the operation: its responses are never wrapped.</summary>
    /// <exception cref="ArgumentException">A pointer or schema the redactor cannot use.</exception>
    public static ApiRedactions? Compile(ApiOperation operation, IEnumerable<RedactionSetting> settings)
    {
        var own = settings.Where(s => OperationSelector.Any(s.Operations, operation)).ToList();
        if (own.Count == 0)
        {
            return null;
        }
        // Keys: every status an entry or a declared response names; a code is also covered by its range and default.
        var keys = own.Select(s => s.Status).Concat(operation.Responses.Select(r => r.Status)).Distinct(StringComparer.Ordinal);
        var byKey = new Dictionary<string, ResponseRedactor>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            var applying = own.Where(s => Covers(s.Status, key)).ToList();
            if (applying.Count == 0)
            {
                continue;
            }
            var rules = applying.SelectMany(s => s.Remove.Select(p => new RedactionRule(p, RedactionAction.Remove))
                .Concat(s.Mask.Select(p => new RedactionRule(p, RedactionAction.Mask)))).Distinct().ToList();
            var schema = applying.Any(s => s.RemoveUndeclared)
                ? operation.Responses.Where(r => Covers(r.Status, key)).OrderByDescending(r => ApiStatus.Specificity(r.Status)).FirstOrDefault()?.Schema
                : null;
            try
            {
                byKey[key] = ResponseRedactor.Compile(rules, schema);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"operation {operation.Id} redaction for status {key}: {e.Message}", e);
            }
        }
        return byKey.Count == 0 ? null : new ApiRedactions(byKey.ToFrozenDictionary(StringComparer.Ordinal));
    }

    /// <summary>The redactor for a response status: its own code, else its range, else default.</summary>
    public ResponseRedactor? For(int status) =>
        _byKey.TryGetValue(status.ToString(CultureInfo.InvariantCulture), out var exact) ? exact
        : _byKey.TryGetValue($"{status / 100}XX", out var range) ? range
        : _byKey.GetValueOrDefault("default");

    /// <summary>Whether status key <paramref name="outer"/> covers every response key <paramref name="inner"/> does.</summary>
    private static bool Covers(string outer, string inner) =>
        outer == "default" || outer == inner
        || (outer.EndsWith("XX", StringComparison.Ordinal) && inner.Length == 3 && inner[0] == outer[0] && inner != "default");
}
