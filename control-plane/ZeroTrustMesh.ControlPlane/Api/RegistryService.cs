using Grpc.Core;
using ZeroTrustMesh.ControlPlane.Registry;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Api;

/// <summary>The registry API: a thin adapter over <see cref="IServiceRegistry"/>; every caller is a workload with an unrevoked SVID.</summary>
internal sealed class RegistryService(IServiceRegistry registry, WorkloadCaller caller, Config.ConfigStore config, ControlPlaneOptions options, ILogger<RegistryService> logger) : Proto.V1.Registry.RegistryBase
{
    public override Task<RegisterResponse> Register(RegisterRequest request, ServerCallContext context)
    {
        var identity = caller.Require(context).Id;
        var endpoint = request.Endpoint ?? throw Invalid("endpoint is required");
        var own = RegisteredEndpoint.ServiceOf(identity)!;
        if (!string.IsNullOrEmpty(endpoint.Service) && endpoint.Service != own)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"'{identity}' may register only service '{own}', not '{endpoint.Service}'"));
        }
        if (!string.IsNullOrEmpty(endpoint.SpiffeId) && endpoint.SpiffeId != identity.Value)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"the endpoint names '{endpoint.SpiffeId}' but the caller is '{identity}'"));
        }
        if (!System.Net.IPEndPoint.TryParse(endpoint.InboundAddress, out var inbound) || inbound.Port == 0)
        {
            throw Invalid($"inbound_address '{endpoint.InboundAddress}' is not ip:port");
        }
        if (endpoint.HttpPorts.Concat(endpoint.TcpPorts).Any(p => p is 0 or > 65535))
        {
            throw Invalid("ports must be 1..65535");
        }
        if (endpoint.ServiceAddress.Length > 0 && !System.Net.IPAddress.TryParse(endpoint.ServiceAddress, out _))
        {
            throw Invalid($"service_address '{endpoint.ServiceAddress}' is not an IP address");
        }

        var registered = registry.Register(identity, endpoint.InboundAddress, [.. endpoint.HttpPorts.Select(p => (int)p)], [.. endpoint.TcpPorts.Select(p => (int)p)],
            endpoint.ServiceAddress.Length > 0 ? endpoint.ServiceAddress : null);
        if (registered is not null)
        {
            ControlPlaneLog.EndpointRegistered(logger, registered.Service, identity.Value, registered.InboundAddress);
        }
        else
        {
            // Kubernetes: a heartbeat, answered so that sidecars keep no error state; the API server says where pods are.
            ControlPlaneLog.HeartbeatOnly(logger, identity.Value, endpoint.InboundAddress);
        }
        return Task.FromResult(new RegisterResponse { TtlSeconds = (uint)registry.Ttl.TotalSeconds });
    }

    public override Task<ResolveResponse> Resolve(ResolveRequest request, ServerCallContext context)
    {
        caller.Require(context);
        var endpoints = request.TargetCase switch
        {
            ResolveRequest.TargetOneofCase.Service => registry.ResolveName(request.Service),
            ResolveRequest.TargetOneofCase.Address => registry.ResolveAddress(request.Address),
            _ => throw Invalid("service or address is required"),
        };
        var response = new ResolveResponse();
        var state = config.Current;
        response.Endpoints.AddRange(endpoints.Select(e =>
        {
            var proto = new ServiceEndpoint
            {
                Service = e.Service,
                SpiffeId = e.Identity?.Value ?? "",
                InboundAddress = e.InboundAddress,
                ServiceAddress = e.ServiceAddress ?? "",
            };
            proto.HttpPorts.AddRange(e.HttpPorts.Select(p => (uint)p));
            proto.TcpPorts.AddRange(e.TcpPorts.Select(p => (uint)p));
            if (options.L4Mode && e.Identity is { } id && id.TryGetWorkload(out var ns, out var sa))
            {
                // The same decision the endpoint's own sidecar receives in its config: callers relay only what it takes as L4.
                var modes = state.PortModesFor(ns!, state.KeyFor(new WorkloadRef(ns!, sa!)).Service, l4Mode: true);
                proto.L4Ports.AddRange(e.HttpPorts.Where(modes.IsL4).Select(p => (uint)p));
            }
            foreach (var (servicePort, targetPort) in e.ServicePorts)
            {
                proto.ServicePorts[(uint)servicePort] = (uint)targetPort;
            }
            return proto;
        }));
        return Task.FromResult(response);
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
