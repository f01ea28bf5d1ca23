using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Prometheus;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Sidecar.ApiProtection.Redaction;
using ZeroTrustMesh.Sidecar.Inbound;
using ZeroTrustMesh.Sidecar.Telemetry;

namespace ZeroTrustMesh.Sidecar.ApiProtection;

/// <summary>
/// ApiSpec, enforced (OWASP API1 and API3 at the sidecar). For each request:
/// <list type="number">
/// <item>Match the operation (path template, method). None: <c>unknownOperations</c> decides (Deny: 404).</item>
/// <item>Check path, query and header parameters against their schemas, then, for an operation that declares a JSON
/// body and a request that sends JSON, the body (read up to <c>maxBodyBytes</c>: 413 beyond; invalid JSON or nesting
/// deeper than <see cref="MaxDepth"/>: 400). Every error is reported, as <c>where/pointer: reason</c>.</item>
/// <item>Object rules: the path parameter must equal the caller's attribute (403 naming policy, rule and parameter).</item>
/// </list>
/// In Enforce, responses of operations a <c>redaction</c> entry selects stream through <see cref="JsonRedactionTransform"/>
/// (counted in <c>ztm_api_redactions_total{policy}</c>; a response that is not valid JSON ends where it goes wrong and is
/// counted as <c>result="invalid_response"</c>).
/// Enforce answers the refusal; DryRun lets the request pass, logs the same verdict and leaves responses untouched. Either way it is counted in
/// <c>ztm_api_validation_total{policy,result}</c>. Requests of workloads without an ApiSpec never reach this stage.
/// </summary>
internal sealed class ApiProtectionStage : IInboundStage
{
    /// <summary>JSON nesting the sidecar parses; deeper bodies are refused (System.Text.Json's own default).</summary>
    public const int MaxDepth = 64;

    /// <summary>Errors listed in one refusal; the rest are counted.</summary>
    private const int MaxListedErrors = 20;

    private static readonly JsonDocumentOptions Parsing = new() { MaxDepth = MaxDepth };

    private readonly ApiSpecSpec _spec;
    private readonly ApiOperations _operations;
    private readonly SidecarMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Action<int> _redacted;
    private readonly Action _invalidResponse;
    private readonly Counter.Child _valid;

    public ApiProtectionStage(ApiSpec spec, SidecarMetrics metrics, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(spec);
        Policy = $"{spec.Metadata.Namespace}/{spec.Metadata.Name}";
        _spec = spec.Spec;
        _operations = new ApiOperations(spec, Policy);
        _metrics = metrics;
        _logger = logger;
        _redacted = count => metrics.ApiRedacted(Policy, count);
        _invalidResponse = () => metrics.ApiValidation(Policy, "invalid_response");
        _valid = metrics.ApiValidationCounter(Policy, "valid");
    }

    /// <summary><c>namespace/name</c> of the ApiSpec.</summary>
    public string Policy { get; }

    public string Summary => $"{Policy} {_spec.Mode}, {_operations.Count.ToString(CultureInfo.InvariantCulture)} operations, unknown operations: {_spec.UnknownOperations}";

    /// <remarks>
    /// A valid request (the common case) allocates nothing here beyond its parsed body's <see cref="JsonDocument"/>: the
    /// operation is matched on the path's characters, error lists exist only once there is an error, the valid count's
    /// series is looked up once, and a body read that waits reuses a pooled state machine. Allocation per request is
    /// gen0 collections, whose pauses land in the p99 (issue 18); <c>ValidationAllocationTests</c> holds the bound.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
    {
        var match = _operations.Match(request.Method, PathOf(request));
        if (match.Operation is not { } operation)
        {
            return Verdict(request, "unknown", _spec.UnknownOperations == UnknownOperations.Deny
                ? new Refusal(StatusCodes.Status404NotFound, "api_unknown_operation", $"ApiSpec '{Policy}': {match.Unknown}")
                : null, log: _spec.UnknownOperations != UnknownOperations.Allow);
        }
        request.ApiTemplate = operation.Operation.Path;
        List<string>? errors = null;
        foreach (var parameter in operation.Parameters)
        {
            parameter.Check(parameter.Parameter.In switch
            {
                ParameterLocation.Path => ApiPathTemplate.Value(PathOf(request), parameter.Segment),
                ParameterLocation.Header => request.Headers[parameter.Parameter.Name],
                _ => request.Http.Request.Query[parameter.Parameter.Name],
            }, ref errors);
        }
        if (operation.Body is { } schema && HasJsonBody(request, operation, ref errors))
        {
            var body = await request.ReadBodyAsync(_spec.MaxBodyBytes, cancellation);
            if (body.Status == RequestBodyStatus.TooLarge)
            {
                var size = body.DeclaredLength is { } declared ? $"{declared.ToString(CultureInfo.InvariantCulture)} bytes" : "the body";
                return Verdict(request, "too_large", new Refusal(StatusCodes.Status413PayloadTooLarge, "api_too_large",
                    $"ApiSpec '{Policy}': {size} is over the limit of {_spec.MaxBodyBytes.ToString(CultureInfo.InvariantCulture)} bytes (maxBodyBytes)") { CloseConnection = true }, log: true);
            }
            CheckBody(operation, schema, body.Bytes, ref errors);
        }
        if (errors is not null)
        {
            return Verdict(request, "invalid", new Refusal(StatusCodes.Status400BadRequest, "api_invalid", Describe(operation, errors)), log: true);
        }
        for (var i = 0; i < operation.Rules.Length; i++)
        {
            var rule = operation.Rules[i];
            var value = ApiPathTemplate.Value(PathOf(request), operation.RuleSegments[i]);
            if (!rule.Allows(Attributes(request), value))
            {
                return Verdict(request, "object_denied", new Refusal(StatusCodes.Status403Forbidden, "api_object_denied", rule.Denial(value)), log: true);
            }
        }
        _valid.Inc();
        request.SchemaVerdict = Proto.V1.SchemaVerdict.Valid;
        if (operation.Redactions is { } redactions && _spec.Mode == ApiMode.Enforce)
        {
            request.TransformResponse(new JsonRedactionTransform(redactions.For, _redacted, _invalidResponse));
        }
        return StageResult.Continue;
    }

    /// <summary>The request's path without its query string.</summary>
    private static ReadOnlySpan<char> PathOf(InboundRequest request)
    {
        var path = request.Path.AsSpan();
        var query = path.IndexOf('?');
        return query < 0 ? path : path[..query];
    }

    /// <summary>Whether the request sends a JSON body to read; a missing one the operation requires is an error.</summary>
    private static bool HasJsonBody(InboundRequest request, CompiledOperation operation, ref List<string>? errors)
    {
        var contentType = request.Http.Request.ContentType;
        var hasBody = request.Http.Request.ContentLength is > 0 || (request.Http.Request.ContentLength is null && request.Http.Request.Headers.TransferEncoding.Count > 0);
        if (contentType is null && !hasBody)
        {
            if (operation.BodyRequired)
            {
                (errors ??= []).Add("body: a JSON request body is required");
            }
            return false;
        }
        // Not JSON (a form, a file, a stream): not this stage's to read; the app decides.
        return IsJson(contentType);
    }

    /// <summary>Parses and checks a read JSON body; adds every error.</summary>
    private static void CheckBody(CompiledOperation operation, ApiSchema schema, ReadOnlyMemory<byte> body, ref List<string>? errors)
    {
        if (body.IsEmpty)
        {
            if (operation.BodyRequired)
            {
                (errors ??= []).Add("body: a JSON request body is required");
            }
            return;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, Parsing);
        }
        catch (JsonException e)
        {
            (errors ??= []).Add($"body: not valid JSON: {e.Message}");
            return;
        }
        using (document)
        {
            var found = schema.Errors(document.RootElement);
            for (var i = 0; i < found.Count; i++)
            {
                (errors ??= []).Add($"body{found[i].Location}: {found[i].Reason}");
            }
        }
    }

    private static bool IsJson(string? contentType)
    {
        if (contentType is null)
        {
            return false;
        }
        var type = contentType.AsSpan();
        var semicolon = type.IndexOf(';');
        type = (semicolon < 0 ? type : type[..semicolon]).Trim();
        return type.Equals("application/json", StringComparison.OrdinalIgnoreCase) || type.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }

    private string Describe(CompiledOperation operation, List<string> errors)
    {
        var text = new StringBuilder($"ApiSpec '{Policy}': the request does not match operation {operation.Operation.Id} ({errors.Count.ToString(CultureInfo.InvariantCulture)} error{(errors.Count == 1 ? "" : "s")}):");
        foreach (var error in errors.Take(MaxListedErrors))
        {
            text.Append("\n  ").Append(error);
        }
        if (errors.Count > MaxListedErrors)
        {
            text.Append(CultureInfo.InvariantCulture, $"\n  … and {errors.Count - MaxListedErrors} more");
        }
        return text.ToString();
    }

    /// <summary>One verdict: counted; logged when asked; a refusal only in Enforce (DryRun lets the request pass).</summary>
    private StageResult Verdict(InboundRequest request, string result, Refusal? refusal, bool log)
    {
        _metrics.ApiValidation(Policy, result);
        request.SchemaVerdict = result switch
        {
            "unknown" => Proto.V1.SchemaVerdict.Undeclared,
            "object_denied" => Proto.V1.SchemaVerdict.Valid, // the request fits the schema; its object is not the caller's
            _ => Proto.V1.SchemaVerdict.Invalid,
        };
        if (refusal is null)
        {
            if (log)
            {
                SidecarLog.ApiVerdict(_logger, Policy, "pass", result, request.Method, request.Path, request.CallerName, "operation not declared");
            }
            return StageResult.Continue;
        }
        if (log)
        {
            SidecarLog.ApiVerdict(_logger, Policy, _spec.Mode == ApiMode.Enforce ? "refused" : "dry-run, passed", result, request.Method, request.Path, request.CallerName, refusal.Reason);
        }
        return _spec.Mode == ApiMode.Enforce ? StageResult.Refuse(refusal) : StageResult.Continue;
    }

    private static RequestAttributes Attributes(InboundRequest request) => new()
    {
        Caller = request.Caller,
        CallerNamespace = request.CallerNamespace,
        Method = request.Method,
        Path = request.Path,
        Port = request.Port,
        Headers = request.HeaderValues,
        Claims = request.Claims,
        SourceAddress = request.SourceAddress,
        Now = request.Now,
    };
}

internal sealed class ApiProtectionStageKind(SidecarMetrics metrics, ILoggerFactory loggers) : IInboundStageKind
{
    private readonly ILogger _logger = loggers.CreateLogger("ZeroTrustMesh.Sidecar.ApiProtection");

    public PolicyKind Kind => ApiSpecKind.Instance;

    public int Order => InboundStageOrder.ApiProtection;

    /// <summary>The workload's own ApiSpec over its namespace's, then first by name (the control plane allows one per selector).</summary>
    /// <exception cref="ArgumentException">A schema the sidecar cannot compile, or a document that was not compiled.</exception>
    public IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context)
    {
        var spec = resources.Cast<ApiSpec>().OrderBy(r => r.Selector is null).ThenBy(r => r.Metadata.Name, StringComparer.Ordinal).FirstOrDefault();
        if (spec is null)
        {
            return null;
        }
        if (!spec.IsCompiled)
        {
            throw new ArgumentException($"ApiSpec '{spec.Metadata.Namespace}/{spec.Metadata.Name}' arrived with its OpenAPI document, not compiled operations");
        }
        try
        {
            return new ApiProtectionStage(spec, metrics, _logger);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"ApiSpec '{spec.Metadata.Namespace}/{spec.Metadata.Name}': {e.Message}", e);
        }
    }
}
