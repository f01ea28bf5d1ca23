using System.Net;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.ControlPlane.Coordination;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Proto;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>Operator policy calls; <see cref="OperatorOnlyInterceptor"/> has authenticated the caller.</summary>
internal sealed class PolicyAdminService(ConfigStore store, IPolicySource policies, ConfigDistributor distributor, CertificateAuthority ca, IReplicaLeadership leadership, ILogger<PolicyAdminService> logger) : PolicyAdmin.PolicyAdminBase
{
    private const string Operator = "operator";

    public override Task<ApplyResponse> Apply(ApplyRequest request, ServerCallContext context)
    {
        var source = string.IsNullOrEmpty(request.Source) ? "-" : request.Source;
        try
        {
            var size = Encoding.UTF8.GetByteCount(request.Yaml);
            if (size > PolicyAdminLimits.MaxApplyBytes)
            {
                throw new PolicyValidationException([new PolicyError("", PolicyAdminLimits.TooLarge(source, size))]);
            }
            var result = policies.Apply(source, request.Yaml, Operator);
            var response = new ApplyResponse { Version = store.Current.Version };
            response.Applied.AddRange(result.Outcomes);
            response.Warnings.AddRange(result.Warnings);
            return Task.FromResult(response);
        }
        catch (PolicyValidationException e)
        {
            var errors = string.Join("\n", e.Errors.Select(x => x.ToString()));
            ControlPlaneLog.PolicyRefused(logger, Operator, errors.Replace('\n', ';'));
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"{e.Errors.Count} error(s), nothing applied:\n{errors}"));
        }
        catch (PolicySourceException e)
        {
            throw new RpcException(new Status(e.NotServed ? StatusCode.Unimplemented : StatusCode.FailedPrecondition, e.Message));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"the policy could not be stored: {e.Message}"));
        }
    }

    public override Task<DeleteResponse> Delete(DeleteRequest request, ServerCallContext context)
    {
        var kind = KindOf(request.Kind);
        var key = new ResourceKey(kind, string.IsNullOrEmpty(request.Namespace) ? ResourceMetadata.DefaultNamespace : request.Namespace, request.Name);
        try
        {
            if (!policies.Delete(key, Operator))
            {
                throw new RpcException(new Status(StatusCode.NotFound, $"{key} does not exist"));
            }
            return Task.FromResult(new DeleteResponse { Version = store.Current.Version });
        }
        catch (PolicySourceException e)
        {
            throw new RpcException(new Status(e.NotServed ? StatusCode.Unimplemented : StatusCode.FailedPrecondition, e.Message));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"{key} could not be deleted: {e.Message}"));
        }
    }

    public override Task<ListResponse> List(ListRequest request, ServerCallContext context)
    {
        var kind = request.Kind.Length == 0 ? null : KindOf(request.Kind);
        var state = store.Current;
        var response = new ListResponse { Version = state.Version };
        response.Resources.AddRange(state.Resources.Values
            .Where(r => (kind is null || r.Key.Kind == kind)
                && (request.Namespace.Length == 0 || r.Key.Namespace == request.Namespace)
                && (request.Name.Length == 0 || r.Key.Name == request.Name))
            .OrderBy(r => r.KeyText, StringComparer.Ordinal)
            .Select(r => new PolicyResourceText { Key = r.KeyText, Yaml = r.Yaml }));
        return Task.FromResult(response);
    }

    public override Task<StatusResponse> Status(StatusRequest request, ServerCallContext context)
    {
        var state = store.Current;
        var response = new StatusResponse
        {
            Version = state.Version,
            Revocations = (uint)state.Revocations.Count,
            TrustBundle = IdentityService.ToProto(ca.Bundle),
            Replica = leadership.Identity,
            Leader = leadership.Leader ?? "",
        };
        response.Sidecars.AddRange(distributor.Sessions.Select(s => new SidecarStatus
        {
            SpiffeId = s.Id.Value,
            Service = $"{s.Workload.Service}.{s.Workload.Namespace}",
            VersionApplied = s.VersionApplied,
            VersionSent = s.VersionSent,
            NackError = s.NackError,
            // The certificate the sidecar holds now (renewals included), not the one its stream was opened with.
            CertificateExpiresAt = Timestamp.FromDateTimeOffset(s.CertificateExpiresAt),
            LastSeen = Timestamp.FromDateTimeOffset(s.LastSeen),
            Connected = s.Connected,
            Serial = s.Serial,
            CertificateRoot = CertificateRoots.RootOf(s.Current.SignerKeyId, ca) ?? "",
        }));
        return Task.FromResult(response);
    }

    /// <summary>
    /// Evaluates a hypothetical request exactly as the destination's sidecar would (same compiler, same snapshot),
    /// then each policy on its own, to show the trail of what matched. A connection (<c>--tcp</c>) is evaluated as the
    /// sidecar authorizes a TCP or L4 connection, and the trail says how each rule with HTTP-only fields reads there.
    /// </summary>
    public override Task<PolicyTestResponse> Test(PolicyTestRequest request, ServerCallContext context)
    {
        var workload = WorkloadOf(request.To);
        SpiffeId? caller = null;
        if (request.From.Length > 0)
        {
            caller = SpiffeId.TryParse(request.From, out var id, out var error) ? id : throw Invalid($"--from '{request.From}' is not a SPIFFE ID: {error}");
        }
        IPAddress? source = null;
        if (request.SourceIp.Length > 0 && !IPAddress.TryParse(request.SourceIp, out source))
        {
            throw Invalid($"source ip '{request.SourceIp}' is not an IP address");
        }
        var connection = request.Connection;
        if (connection && (request.Method.Length > 0 || request.Path.Length > 0 || request.Headers.Count > 0 || request.Jwt.Length > 0))
        {
            throw Invalid("a TCP connection has no method, path, headers or JWT: leave out --method, --path, --header and --jwt with --tcp");
        }
        if (connection && request.Port == 0)
        {
            throw Invalid("--tcp needs --port: the destination's TCP or L4 port");
        }
        var claims = request.Jwt.Length > 0 ? JwtClaims.Decode(request.Jwt) : null;
        var headers = new MapValues(request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value));
        var method = request.Method.Length > 0 ? request.Method.ToUpperInvariant() : "GET";
        var path = request.Path.Length > 0 ? request.Path : "/";

        var state = store.Current;
        var policies = state.For(workload).Select(r => r.Document.Resource).OfType<AuthorizationPolicy>().ToList();
        AuthorizationDecision Decide(IEnumerable<AuthorizationPolicy> set) =>
            PolicyCompiler.Compile(state.Version, workload, set).Evaluate(connection
                ? new RequestAttributes
                {
                    // As the sidecar's AuthorizeConnection describes a connection.
                    Caller = caller,
                    CallerNamespace = caller is { } c1 && c1.TryGetWorkload(out var ns1, out _) ? ns1 : null,
                    Port = (int)request.Port,
                    SourceAddress = source,
                    Now = DateTimeOffset.UtcNow,
                    IsConnection = true,
                }
                : new RequestAttributes
                {
                    Caller = caller,
                    CallerNamespace = caller is { } c && c.TryGetWorkload(out var ns, out _) ? ns : null,
                    Method = method,
                    Path = path,
                    Port = (int)request.Port,
                    Headers = headers,
                    Claims = claims,
                    SourceAddress = source,
                    Now = DateTimeOffset.UtcNow,
                }, default);

        var decision = Decide(policies);
        var response = new PolicyTestResponse
        {
            Allowed = decision.Allowed,
            Policy = decision.Policy ?? "",
            Rule = decision.Rule,
            Reason = decision.Reason,
            Version = state.Version,
        };
        foreach (var policy in policies)
        {
            var alone = Decide([policy]);
            var matched = policy.Spec.Action switch
            {
                PolicyAction.Allow => alone.Allowed && alone.Policy is not null,
                PolicyAction.Deny => !alone.Allowed && alone.Policy is not null,
                _ => alone.AuditCount > 0,
            };
            response.Trail.Add($"{policy.Spec.Action.ToString().ToUpperInvariant()} {policy.Metadata.Namespace}/{policy.Metadata.Name}: "
                + (matched ? $"matched (rule {alone.Rule})" : "no rule matched"));
            for (var i = 0; connection && !policy.Spec.Rules.IsDefault && i < policy.Spec.Rules.Length; i++)
            {
                if (ConnectionRules.HttpOnlyFields(policy.Spec.Rules[i]) is { Count: > 0 } fields)
                {
                    response.Trail.Add($"  rule {i}: {ConnectionRules.Explain(policy.Spec.Action, fields)}");
                }
            }
        }
        if (policies.Count == 0)
        {
            response.Trail.Add($"no AuthorizationPolicy selects {workload.Service}.{workload.Namespace}");
        }
        if (connection)
        {
            // ApiSpec object rules need a path: a connection relayed as bytes never meets them.
            return Task.FromResult(response);
        }
        // Then the workload's ApiSpec object rules (BOLA), as its sidecar checks them after authorization.
        var query = path.IndexOf('?', StringComparison.Ordinal);
        var segments = (query < 0 ? path : path[..query]).Split('/');
        var attributes = new RequestAttributes
        {
            Caller = caller,
            CallerNamespace = caller is { } c && c.TryGetWorkload(out var callerNs, out _) ? callerNs : null,
            Method = method,
            Path = path,
            Port = (int)request.Port,
            Headers = headers,
            Claims = claims,
            SourceAddress = source,
            Now = DateTimeOffset.UtcNow,
        };
        foreach (var spec in state.For(workload).Select(r => r.Document.Resource).OfType<ApiSpec>().Where(s => s.IsCompiled))
        {
            var name = $"{spec.Metadata.Namespace}/{spec.Metadata.Name}";
            if (ApiPathTemplate.Find(spec.Spec.Operations, method, segments) is not { } operation)
            {
                response.Trail.Add($"ApiSpec {name}: {method} {path} is not an operation of the API (unknownOperations: {spec.Spec.UnknownOperations})");
                continue;
            }
            var template = new ApiPathTemplate(operation.Path);
            foreach (var rule in spec.Spec.ObjectAuthorization.Where(r => OperationSelector.Any(r.Operations, operation)).Select(r => new ObjectRule(name, r)))
            {
                var value = ApiPathTemplate.Value(segments, template.IndexOf(rule.Parameter));
                var allowed = rule.Allows(attributes, value);
                response.Trail.Add($"ApiSpec {name} object rule '{rule.Name}' on {operation.Id}: {(allowed ? "passed" : "denied")}");
                if (!allowed && response.Allowed)
                {
                    response.Allowed = spec.Spec.Mode != ApiMode.Enforce;
                    response.Policy = name;
                    response.Rule = -1;
                    response.Reason = spec.Spec.Mode == ApiMode.Enforce ? rule.Denial(value) : $"{rule.Denial(value)} (DryRun: logged, not refused)";
                }
            }
        }
        return Task.FromResult(response);
    }

    private WorkloadRef WorkloadOf(string to)
    {
        if (string.IsNullOrEmpty(to))
        {
            throw Invalid("--to names the destination service (orders or orders.shop)");
        }
        var dot = to.IndexOf('.', StringComparison.Ordinal);
        if (dot > 0)
        {
            return new WorkloadRef(to[(dot + 1)..], to[..dot]);
        }
        var namespaces = store.Current.Resources.Values.Select(r => r.Key.Namespace).Distinct().ToList();
        return namespaces.Count == 1 ? new WorkloadRef(namespaces[0], to)
            : throw Invalid($"'{to}' is ambiguous or unknown: name it as service.namespace");
    }

    /// <summary>The kind an operator typed (any case, singular or plural, as kubectl), or INVALID_ARGUMENT listing the kinds.</summary>
    private static string KindOf(string typed) =>
        PolicyKinds.Builtin.Find(typed)?.Name
        ?? throw Invalid($"unknown kind '{typed}': one of {PolicyKinds.Builtin.Names} (any case, singular or plural)");

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    private sealed class MapValues(Dictionary<string, string> values) : IRequestValues
    {
        public bool TryGetValue(string name, int index, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
        {
            value = null;
            return index == 0 && values.TryGetValue(name, out value);
        }
    }
}
