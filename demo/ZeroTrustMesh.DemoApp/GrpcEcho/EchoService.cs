using Grpc.Core;
using ZeroTrustMesh.DemoApp.HttpEcho;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.DemoApp.GrpcEcho;

/// <summary>gRPC echo: each reply says which caller identity the app saw and where it stands in the call.</summary>
internal sealed class EchoService(DemoOptions options) : Echo.EchoBase
{
    public override Task<EchoReply> Unary(EchoRequest request, ServerCallContext context)
    {
        context.ResponseTrailers.Add(EchoEndpoints.TrailerName, EchoEndpoints.TrailerValue);
        return Task.FromResult(Reply(request, context, 1));
    }

    public override async Task Chat(IAsyncStreamReader<EchoRequest> requestStream, IServerStreamWriter<EchoReply> responseStream, ServerCallContext context)
    {
        ulong sequence = 0;
        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            await responseStream.WriteAsync(Reply(request, context, ++sequence), context.CancellationToken);
        }
        context.ResponseTrailers.Add(EchoEndpoints.TrailerName, EchoEndpoints.TrailerValue);
    }

    private EchoReply Reply(EchoRequest request, ServerCallContext context, ulong sequence) => new()
    {
        Message = request.Message,
        Caller = context.RequestHeaders.GetValue(EchoEndpoints.CallerHeader) ?? "",
        Sequence = sequence,
        App = options.Name,
    };
}
