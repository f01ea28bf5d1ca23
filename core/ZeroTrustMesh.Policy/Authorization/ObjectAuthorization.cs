using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// Which operations of an ApiSpec an object rule or a redaction applies to: an <c>operationId</c>, or
/// <c>METHOD PATTERN</c> where METHOD may be <c>*</c> and PATTERN is a rule path pattern matched against the path
/// template (<c>GET /users/{userId}/orders/*</c>). The pattern is matched against the OpenAPI document's path text, not
/// a request path, so a brace in it is literal (<c>{userId}</c> names the parameter) and not a rule path template.
/// </summary>
public sealed class OperationSelector
{
    private readonly string? _id;
    private readonly string? _method;
    private readonly PathPatterns? _paths;

    private OperationSelector(string? id, string? method, PathPatterns? paths)
    {
        _id = id;
        _method = method;
        _paths = paths;
    }

    /// <summary>Null when <paramref name="text"/> is a valid selector, else why not.</summary>
    public static string? Validate(string text)
    {
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        if (space < 0)
        {
            return text.Length > 0 && !text.Contains('/', StringComparison.Ordinal) ? null
                : $"'{text}' is neither an operationId nor 'METHOD /path/template'";
        }
        var method = text[..space];
        var path = text[(space + 1)..];
        return method == "*" ? PolicySyntax.ValidatePath(path, templates: false) : PolicySyntax.ValidateMethod(method) ?? PolicySyntax.ValidatePath(path, templates: false);
    }

    /// <summary>A validated selector.</summary>
    public static OperationSelector Parse(string text)
    {
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        return space < 0 ? new OperationSelector(text, null, null) : new OperationSelector(null, text[..space], new PathPatterns([text[(space + 1)..]], templates: false));
    }

    public bool Matches(ApiOperation operation) =>
        _id is not null ? operation.Id == _id
            : (_method == "*" || _method == operation.Method) && _paths!.Matches(operation.Path);

    /// <summary>Whether any of <paramref name="selectors"/> matches <paramref name="operation"/>.</summary>
    public static bool Any(IEnumerable<string> selectors, ApiOperation operation) => selectors.Any(s => Parse(s).Matches(operation));
}

/// <summary>
/// The caller attribute an object rule compares a path parameter with: <c>request.auth.claims[NAME]</c>,
/// <c>request.headers[NAME]</c>, <c>source.workload</c> (the caller's service account), <c>source.namespace</c> or
/// <c>source.principal</c> (its SPIFFE ID).
/// </summary>
public sealed class ObjectAttribute
{
    public const string Supported = "request.auth.claims[NAME], request.headers[NAME], source.workload, source.namespace or source.principal";

    private readonly ConditionKind? _kind;
    private readonly string _name;

    private ObjectAttribute(string key, ConditionKind? kind, string name)
    {
        Key = key;
        _kind = kind;
        _name = name;
    }

    public string Key { get; }

    public static string? Validate(string key) =>
        key.Length == 0 ? $"the caller attribute to compare with is required: {Supported}"
        : key is "source.workload" or "source.namespace" or "source.principal" ? null
        : ConditionKeys.TryParse(key, out var kind, out _) && kind is ConditionKind.Claim or ConditionKind.Header ? null
        : $"'{key}' is not a caller attribute: use {Supported}";

    /// <summary>A validated key.</summary>
    public static ObjectAttribute Parse(string key) =>
        ConditionKeys.TryParse(key, out var kind, out var name) ? new ObjectAttribute(key, kind, name) : new ObjectAttribute(key, null, key);

    /// <summary>Whether one of the attribute's values (a claim may be an array) equals <paramref name="value"/>.</summary>
    public bool Holds(in RequestAttributes request, string value)
    {
        switch (_kind)
        {
            case ConditionKind.Claim or ConditionKind.Header:
                var source = _kind == ConditionKind.Claim ? request.Claims : request.Headers;
                for (var i = 0; i < 64 && source is not null && source.TryGetValue(_name, i, out var candidate); i++)
                {
                    if (candidate == value)
                    {
                        return true;
                    }
                }
                return false;
            default:
                if (request.Caller is not { } caller)
                {
                    return false;
                }
                if (_name == "source.principal")
                {
                    return caller.Value == value;
                }
                return caller.TryGetWorkload(out var ns, out var account) && (_name == "source.namespace" ? ns : account) == value;
        }
    }
}

/// <summary>
/// One compiled object rule (ApiSpec <c>objectAuthorization</c>, OWASP API1): the path parameter must equal the caller
/// attribute, unless one of the escape conditions holds. Pure, shared by the sidecar and <c>ztmctl policy test</c>.
/// </summary>
public sealed class ObjectRule
{
    private readonly ObjectAttribute _equals;
    private readonly ConditionMatcher[] _unless;

    public ObjectRule(string policy, ObjectAuthorizationRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        Policy = policy;
        Name = rule.Name;
        Parameter = rule.Parameter;
        _equals = ObjectAttribute.Parse(rule.EqualsKey);
        _unless = [.. rule.Unless.Select(ConditionMatcher.Create)];
    }

    /// <summary><c>namespace/name</c> of the ApiSpec.</summary>
    public string Policy { get; }

    public string Name { get; }

    public string Parameter { get; }

    /// <summary>Whether the request may touch the object <paramref name="value"/> names.</summary>
    public bool Allows(in RequestAttributes request, string value)
    {
        if (_equals.Holds(request, value))
        {
            return true;
        }
        foreach (var condition in _unless)
        {
            if (condition.Matches(request))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The 403 reason: policy, rule and parameter.</summary>
    public string Denial(string value) =>
        $"denied by ApiSpec '{Policy}' object rule '{Name}': path parameter {Parameter} '{value}' is not the caller's {_equals.Key}";
}
