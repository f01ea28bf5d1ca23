using System.Globalization;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.OpenApi;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Discovery;

/// <summary>
/// <c>ztm.v1.ApiAdmin</c> (<c>ztmctl api …</c>): a thin adapter over <see cref="ApiInventory"/> and the ApiSpecs in the
/// config store; <see cref="Api.OperatorOnlyInterceptor"/> has authenticated the caller. A service is named
/// <c>orders.shop</c>, or <c>orders</c> when one namespace has it; one the control plane neither observed nor holds an
/// ApiSpec for is NOT_FOUND.
/// </summary>
internal sealed partial class ApiAdminService(ApiInventory inventory, ConfigStore store, TimeProvider time, LeastPrivilege.AuditCounts audits) : ApiAdmin.ApiAdminBase
{
    /// <summary>Suggested AuthorizationPolicies for a namespace (<see cref="LeastPrivilege.PolicySuggester"/>); NOT_FOUND when nothing of it was observed.</summary>
    public override Task<PolicySuggestResponse> Suggest(PolicySuggestRequest request, ServerCallContext context)
    {
        var ns = request.Namespace;
        if (ns.Length == 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "namespace: required"));
        }
        if (ns.Length > 63 || !ns.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"namespace: '{(ns.Length > 63 ? ns[..63] + "…" : ns)}' is not a namespace (lower-case letters, digits and '-', at most 63 characters)"));
        }
        var action = request.Action.Length == 0 ? "AUDIT" : request.Action;
        if (action is not ("AUDIT" or "ALLOW"))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"action: '{action}' must be AUDIT or ALLOW"));
        }
        if (request.SinceSeconds > (ulong)TimeSpan.FromDays(3650).TotalSeconds)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "since: at most 3650 days"));
        }
        var suggester = new LeastPrivilege.PolicySuggester(inventory, time);
        if (suggester.ServicesIn(ns).Count == 0)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"namespace '{ns}': nothing was observed of its workloads (sidecars report what they serve; see 'ztmctl api inventory')"));
        }
        var suggestion = suggester.Suggest(ns, request.SinceSeconds == 0 ? null : TimeSpan.FromSeconds(request.SinceSeconds), action);
        if (suggestion.Policies == 0)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, request.SinceSeconds > 0
                ? $"namespace '{ns}': no caller that a policy can name was seen within the last {ZeroTrustMesh.Identity.Durations.Format(TimeSpan.FromSeconds(request.SinceSeconds))}: widen --since"
                : $"namespace '{ns}': no caller that a policy can name was observed ({suggestion.Skipped.Count} endpoint caller(s) not suggested: {string.Join("; ", suggestion.Skipped.Take(3))})"));
        }
        var response = new PolicySuggestResponse { Yaml = suggestion.Yaml, Policies = (uint)suggestion.Policies, Rules = (uint)suggestion.Rules };
        response.Skipped.AddRange(suggestion.Skipped);
        return Task.FromResult(response);
    }

    public override async Task<AuditReportResponse> AuditReport(AuditReportRequest request, ServerCallContext context)
    {
        IReadOnlyList<LeastPrivilege.AuditPolicyRecord> policies;
        try
        {
            policies = await audits.ReportAsync(request.Namespace, context.CancellationToken);
        }
        catch (IOException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"AUDIT counts cannot be read: {e.Message}"));
        }
        var response = new AuditReportResponse();
        response.Policies.AddRange(policies.Select(p =>
        {
            var proto = new AuditPolicyReport
            {
                Policy = p.Policy,
                Generation = p.Generation,
                Since = Timestamp.FromDateTimeOffset(p.Since),
                Requests = (ulong)p.Requests,
                WouldDeny = (ulong)p.WouldDeny,
                FirstSeen = p.FirstSeen is { } first ? Timestamp.FromDateTimeOffset(first) : null,
                LastSeen = p.LastSeen is { } last ? Timestamp.FromDateTimeOffset(last) : null,
                LastWouldDeny = p.LastWouldDeny is { } at ? Timestamp.FromDateTimeOffset(at) : null,
            };
            proto.RecentWouldDeny.AddRange(p.Recent.Select(s => s.Request));
            return proto;
        }));
        return response;
    }

    public override Task<ApiInventoryResponse> Inventory(ApiInventoryRequest request, ServerCallContext context)
    {
        var response = new ApiInventoryResponse { ServicesOverCap = (ulong)inventory.OverServiceCap };
        var services = request.Service.Length == 0 ? inventory.Services : [Resolve(request.Service)];
        foreach (var service in services)
        {
            var view = inventory.Inventory(service);
            var proto = new ApiServiceInventory { Service = service, MaxPaths = (uint)inventory.Options.MaxPathsPerService };
            if (view is not null)
            {
                proto.ObservingSince = Timestamp.FromDateTimeOffset(view.ObservingSince);
                proto.Requests = (ulong)view.Requests;
                proto.Refused = (ulong)view.Refused;
                proto.NotFound = (ulong)view.NotFound;
                proto.OverCap = (ulong)view.OverCap;
                proto.Pins.AddRange(view.Pins);
                proto.Endpoints.AddRange(view.Endpoints.Select(ToProto));
            }
            response.Services.Add(proto);
        }
        return Task.FromResult(response);
    }

    public override Task<ApiDiffResponse> Diff(ApiDiffRequest request, ServerCallContext context)
    {
        var service = Resolve(Required(request.Service));
        if (SpecOf(service) is not { } spec)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"service '{service}' has no ApiSpec to compare with: declare one, or see what was observed with 'ztmctl api skeleton --service {service}'"));
        }
        var declared = spec.Spec.Operations.IsDefault ? [] : spec.Spec.Operations;
        var findings = inventory.Diff(service, [.. declared.Select(o => new DeclaredOperation(o.Method, o.Path, o.Deprecated))]);
        var view = inventory.Inventory(service);
        var response = new ApiDiffResponse
        {
            Service = service,
            ApiSpec = $"{spec.Metadata.Namespace}/{spec.Metadata.Name}",
            UnusedAfterSeconds = (ulong)inventory.Options.UnusedAfter.TotalSeconds,
            UnusedKnown = view is not null && time.GetUtcNow() - view.ObservingSince >= inventory.Options.UnusedAfter,
            DeclaredOperations = (uint)declared.Length,
        };
        response.Findings.AddRange(findings.Select(f => new ApiDiffFinding
        {
            Kind = f.Kind.ToString().ToLowerInvariant(),
            Method = f.Method,
            Template = f.Template,
            Requests = (ulong)f.Requests,
            LastSeen = f.LastSeen is { } at ? Timestamp.FromDateTimeOffset(at) : null,
        }));
        return Task.FromResult(response);
    }

    public override async Task<ApiSkeletonResponse> Skeleton(ApiSkeletonRequest request, ServerCallContext context)
    {
        var service = Resolve(Required(request.Service));
        var view = inventory.Inventory(service) ?? throw new RpcException(new Status(StatusCode.NotFound, $"nothing was observed of service '{service}' yet"));
        return new ApiSkeletonResponse { Document = await SkeletonDocumentAsync(view, context.CancellationToken) };
    }

    /// <summary>
    /// An OpenAPI 3.1 document of what was observed: one operation per endpoint, its path parameters as strings, a
    /// response per status class seen, and the evidence (requests, first and last seen, callers) in its description.
    /// </summary>
    internal static async Task<string> SkeletonDocumentAsync(ServiceInventoryView view, CancellationToken cancellation)
    {
        var document = new OpenApiDocument
        {
            Info = new OpenApiInfo
            {
                Title = view.Service,
                Version = "observed",
                Description = $"Observed by ZeroTrustMesh sidecars since {view.ObservingSince:O}: {view.Requests.ToString(CultureInfo.InvariantCulture)} request(s). "
                    + "Generated from traffic, not declared: review before use.",
            },
            Paths = [],
        };
        foreach (var group in view.Endpoints.GroupBy(e => e.Template, StringComparer.Ordinal))
        {
            var item = new OpenApiPathItem();
            foreach (var endpoint in group)
            {
                var operation = new OpenApiOperation
                {
                    Summary = $"{endpoint.Requests.ToString(CultureInfo.InvariantCulture)} request(s), {endpoint.FirstSeen:O} to {endpoint.LastSeen:O}",
                    Description = $"Callers: {string.Join(", ", endpoint.Callers)}{(endpoint.CallersCapped ? ", …" : "")}",
                    Parameters = [.. ParameterNames().Matches(endpoint.Template).Select(m => (IOpenApiParameter)new OpenApiParameter
                    {
                        Name = m.Groups[1].Value,
                        In = Microsoft.OpenApi.ParameterLocation.Path,
                        Required = true,
                        Schema = new OpenApiSchema { Type = JsonSchemaType.String },
                    })],
                    Responses = [],
                };
                foreach (var (statusClass, count) in endpoint.StatusClasses.OrderBy(s => s.Key, StringComparer.Ordinal))
                {
                    operation.Responses[statusClass == "other" ? "default" : statusClass.ToUpperInvariant()] =
                        new OpenApiResponse { Description = $"observed {count.ToString(CultureInfo.InvariantCulture)} time(s)" };
                }
                item.AddOperation(new HttpMethod(endpoint.Method), operation);
            }
            document.Paths[group.Key] = item;
        }
        return await document.SerializeAsJsonAsync(OpenApiSpecVersion.OpenApi3_1, cancellation);
    }

    [GeneratedRegex(@"\{([^}/]+)\}")]
    private static partial Regex ParameterNames();

    private static ApiEndpoint ToProto(InventoryEndpoint e)
    {
        var proto = new ApiEndpoint
        {
            Method = e.Method,
            Template = e.Template,
            Requests = (ulong)e.Requests,
            FirstSeen = Timestamp.FromDateTimeOffset(e.FirstSeen),
            LastSeen = Timestamp.FromDateTimeOffset(e.LastSeen),
            CallersCapped = e.CallersCapped,
            UnattributedRequests = (ulong)e.UnattributedRequests,
        };
        proto.Evidence.AddRange(e.Evidence.Select(c => new ApiCallerEvidence
        {
            Caller = c.Caller,
            Requests = (ulong)c.Requests,
            FirstSeen = Timestamp.FromDateTimeOffset(c.FirstSeen),
            LastSeen = Timestamp.FromDateTimeOffset(c.LastSeen),
        }));
        proto.Callers.AddRange(e.Callers);
        foreach (var (statusClass, count) in e.StatusClasses)
        {
            proto.StatusClasses[statusClass] = (ulong)count;
        }
        return proto;
    }

    private static string Required(string service) =>
        service.Length > 0 ? service : throw new RpcException(new Status(StatusCode.InvalidArgument, "service: required (orders.shop, or orders when one namespace has it)"));

    /// <summary>The full name (<c>sa.ns</c>) of a service observed or declared by an ApiSpec; NOT_FOUND or ambiguous otherwise.</summary>
    private string Resolve(string name)
    {
        if (name.Length > 300)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "service: over 300 characters"));
        }
        var known = inventory.Services.Concat(SpecServices()).Distinct(StringComparer.Ordinal).ToList();
        if (known.Contains(name, StringComparer.Ordinal))
        {
            return name;
        }
        var matching = known.Where(s => s.StartsWith(name + ".", StringComparison.Ordinal) && s.IndexOf('.', name.Length + 1) < 0).ToList();
        return matching.Count switch
        {
            1 => matching[0],
            0 => throw new RpcException(new Status(StatusCode.NotFound, $"unknown service '{name}': nothing was observed of it and no ApiSpec selects it")),
            _ => throw new RpcException(new Status(StatusCode.InvalidArgument, $"service '{name}' is in several namespaces ({string.Join(", ", matching)}): name one")),
        };
    }

    /// <summary>Services an ApiSpec selects by name (<c>sa.ns</c>).</summary>
    private IEnumerable<string> SpecServices() => store.Current.Resources.Values
        .Select(r => r.Document.Resource)
        .OfType<ApiSpec>()
        .Where(s => s.Selector is not null)
        .Select(s => $"{s.Selector!.Service}.{s.Metadata.Namespace}");

    /// <summary>The ApiSpec the service's sidecar enforces: its own over its namespace's, then first by name.</summary>
    private ApiSpec? SpecOf(string service)
    {
        var dot = service.LastIndexOf('.');
        return store.Current.For(service[(dot + 1)..], service[..dot])
            .Select(r => r.Document.Resource)
            .OfType<ApiSpec>()
            .OrderBy(r => r.Selector is null)
            .ThenBy(r => r.Metadata.Name, StringComparer.Ordinal)
            .FirstOrDefault();
    }
}
