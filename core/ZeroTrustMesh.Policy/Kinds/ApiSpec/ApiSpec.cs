using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Kinds;

/// <summary>
/// <c>kind: ApiSpec</c>: API protection for a workload, driven by its OpenAPI 3.0/3.1 document. The operator writes the
/// document (<see cref="ApiSpecSpec.OpenApi"/>) and the options; the control plane parses the document and replaces it
/// with <see cref="ApiSpecSpec.Operations"/> (per-operation, self-contained JSON Schema 2020-12 documents), which is all
/// a sidecar receives. The sidecar enforces it as its API protection stage: request validation, object-level
/// authorization (<see cref="ApiSpecSpec.ObjectAuthorization"/>) and response redaction (<see cref="ApiSpecSpec.Redaction"/>).
/// </summary>
public sealed record ApiSpec(ResourceMetadata Metadata, ApiSpecSpec Spec) : PolicyResource(Metadata)
{
    public const string KindName = "ApiSpec";

    /// <summary>The request body limit when <c>maxBodyBytes</c> is not given: 1 MiB.</summary>
    public const int DefaultMaxBodyBytes = 1024 * 1024;

    public override string Kind => KindName;

    public override WorkloadSelector? Selector => Spec.Selector;

    /// <summary>Whether the control plane has compiled the document (what a sidecar needs).</summary>
    public bool IsCompiled => Spec.OpenApi is null;
}

public sealed record ApiSpecSpec(
    WorkloadSelector? Selector,
    ApiMode Mode,
    UnknownOperations UnknownOperations,
    int MaxBodyBytes,
    ApiDocumentSource? OpenApi,
    ImmutableArray<ObjectAuthorizationRule> ObjectAuthorization,
    ImmutableArray<RedactionSetting> Redaction,
    ImmutableArray<ApiOperation> Operations);

/// <summary>DryRun (the default): verdicts are logged and counted, requests pass. Enforce: refusals are answered.</summary>
public enum ApiMode
{
    DryRun,
    Enforce,
}

/// <summary>What happens to a request that matches no operation of the document.</summary>
public enum UnknownOperations
{
    /// <summary>Passes, counted as <c>unknown</c>.</summary>
    Allow,

    /// <summary>Passes, logged and counted as <c>unknown</c> (the default: learn before you deny).</summary>
    Report,

    /// <summary>Refused with 404 in Enforce (logged and counted in DryRun).</summary>
    Deny,
}

/// <summary><c>spec.openapi</c>: the document inline, or a file next to the policy files (directory mode).</summary>
public sealed record ApiDocumentSource(string? Inline, string? File);

/// <summary>
/// <c>spec.objectAuthorization[]</c> (OWASP API1, BOLA): on the operations <see cref="Operations"/> selects, the path
/// parameter <see cref="Parameter"/> must equal the caller attribute <see cref="EqualsKey"/>
/// (<c>request.auth.claims[sub]</c>, <c>source.workload</c>, …) unless one of <see cref="Unless"/> holds (the
/// AuthorizationPolicy <c>when</c> conditions, e.g. <c>request.auth.claims[role]</c> contains <c>admin</c>).
/// </summary>
public sealed record ObjectAuthorizationRule(string Name, ImmutableArray<string> Operations, string Parameter, string EqualsKey, ImmutableArray<RuleCondition> Unless);

/// <summary>
/// <c>spec.redaction[]</c> (OWASP API3): on the operations <see cref="Operations"/> selects and responses whose status
/// matches <see cref="Status"/> (<c>200</c>, <c>2XX</c> or <c>default</c>), JSON pointer patterns (a <c>*</c> segment is
/// any member or index) to remove or mask, and whether to remove every field the response schema does not declare.
/// </summary>
public sealed record RedactionSetting(ImmutableArray<string> Operations, string Status, ImmutableArray<string> Remove, ImmutableArray<string> Mask, bool RemoveUndeclared);

/// <summary>
/// One operation of the document, compiled by the control plane: method, path template (<c>/users/{userId}</c>),
/// parameters, JSON body, and the declared JSON response schemas that <c>removeUndeclared</c> needs. Every schema is a
/// self-contained JSON Schema 2020-12 document (its references under <c>$defs</c>), as JSON text. <see cref="Deprecated"/>:
/// the document says <c>deprecated: true</c> (API discovery reports such an operation that is still called as a zombie).
/// </summary>
public sealed record ApiOperation(string Id, string Method, string Path, ImmutableArray<ApiParameter> Parameters, ApiBody? Body, ImmutableArray<ApiResponseSchema> Responses, bool Deprecated = false);

public enum ParameterLocation
{
    Path,
    Query,
    Header,
}

/// <summary>A path, query or header parameter; its value is converted to the schema's type before it is checked.</summary>
public sealed record ApiParameter(string Name, ParameterLocation In, bool Required, string Schema);

/// <summary>The JSON request body: <see cref="Schema"/> null when the operation declares a body but no JSON one.</summary>
public sealed record ApiBody(bool Required, string? Schema);

/// <summary>A declared JSON response schema for one status key (<c>200</c>, <c>2XX</c>, <c>default</c>).</summary>
public sealed record ApiResponseSchema(string Status, string Schema);
