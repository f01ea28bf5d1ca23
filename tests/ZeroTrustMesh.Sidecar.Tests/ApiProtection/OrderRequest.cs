using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection;

/// <summary>
/// A JSON <c>POST /api/orders</c> as the inbound proxy hands it to the stages, its body in a MemoryStream (so a read never
/// waits), and <see cref="End"/>, which runs what the request registered for its response's end (the pooled body
/// returned) as Kestrel does. Compiled into the Sidecar tests and the benchmarks (linked).
/// </summary>
internal sealed class OrderRequest : HttpResponseFeature
{
    private readonly List<(Func<object, Task> Callback, object State)> _completed = new(4);

    private OrderRequest()
    {
    }

    public InboundRequest Request { get; private set; } = null!;

    public static OrderRequest Post(byte[] body)
    {
        var http = new DefaultHttpContext();
        var order = new OrderRequest();
        http.Features.Set<IHttpResponseFeature>(order);
        http.Request.Method = "POST";
        http.Request.Path = "/api/orders";
        http.Request.ContentType = "application/json";
        http.Request.ContentLength = body.Length;
        http.Request.Body = new MemoryStream(body, writable: false);
        order.Request = new InboundRequest(http, null, 8080, "/api/orders", DateTimeOffset.UnixEpoch);
        return order;
    }

    public override void OnCompleted(Func<object, Task> callback, object state) => _completed.Add((callback, state));

    public void End()
    {
        foreach (var (callback, state) in _completed)
        {
            callback(state).GetAwaiter().GetResult();
        }
        _completed.Clear();
    }
}
