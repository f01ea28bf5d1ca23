using System.Net;
using System.Text;
using Prometheus;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Proto.V1;
using ZeroTrustMesh.Sidecar.Observations;
using ZeroTrustMesh.Sidecar.Tests.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.Observations;

/// <summary>
/// The producer side of issue 19's observations, on the real inbound pipeline: one observation per request, allowed or
/// refused, with what the stages found (deciding policy and rule, ApiSpec template and verdict); a full buffer drops and counts.
/// </summary>
public sealed class ObservationRecordingTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private const string Config = InboundTestHost.Permissive + """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-read, namespace: shop}
        spec:
          selector: {service: orders}
          action: ALLOW
          rules:
            - to: [{operation: {methods: [POST], paths: [/carts]}}]
            - to: [{operation: {methods: [GET], paths: ["/orders/*"]}}]
        ---
        apiVersion: security.ztm.dev/v1
        kind: ApiSpec
        metadata: {name: orders-api, namespace: shop}
        spec:
          selector: {service: orders}
          mode: DryRun
          operations:
            - id: getOrder
              method: GET
              path: /orders/{orderId}
              parameters: [{name: orderId, in: path, required: true, schema: {type: integer}}]

        """;

    [Fact]
    public async Task Each_request_allowed_or_refused_is_recorded_with_what_the_stages_found()
    {
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", Config, PolicyKinds.Builtin);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/orders/7", UriKind.Relative))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/orders/seven?x=1", UriKind.Relative))).StatusCode); // DryRun: passes, invalid
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/orders/7/items", UriKind.Relative))).StatusCode); // not declared
        Assert.Equal(HttpStatusCode.Forbidden, (await http.GetAsync(new Uri("/admin", UriKind.Relative))).StatusCode);
        using (var post = await http.PostAsync(new Uri("/echo", UriKind.Relative), new StringContent("hello", Encoding.UTF8)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
        }

        var recorded = new List<RequestObservation>();
        Assert.Equal(5, host.Observations.Drain(recorded, 100));
        var lines = recorded.Select(o => $"{o.Method} {o.Path} {o.Status} {(o.Allowed ? "allowed" : "denied")} {o.Policy ?? "-"} {o.Rule} {o.Template ?? "-"} {o.Schema} {o.Caller} {o.Port}").ToList();
        var port = recorded[0].Port;
        Assert.Equal(
        [
            $"GET /orders/7 200 allowed shop/orders-read 1 /orders/{{orderId}} Valid plaintext {port}",
            $"GET /orders/seven 200 allowed shop/orders-read 1 /orders/{{orderId}} Invalid plaintext {port}",
            $"GET /orders/7/items 200 allowed shop/orders-read 1 - Undeclared plaintext {port}",
            $"GET /admin 403 denied - -1 - Unspecified plaintext {port}",
            $"POST /echo 403 denied - -1 - Unspecified plaintext {port}",
        ], lines);
        Assert.True(port > 0);
        Assert.Equal(5, recorded[^1].RequestBytes);
        Assert.All(recorded, o => Assert.True(o.Duration > TimeSpan.Zero));
        Assert.Equal(0, host.Observations.Dropped);

        // The wire form the reporter sends.
        var proto = ObservationReporter.ToProto(recorded[0]);
        Assert.Equal(("shop/orders-read", "1", "/orders/{orderId}", Decision.Allowed, SchemaVerdict.Valid, 200u), (proto.Policy, proto.Rule, proto.Template, proto.Decision, proto.Schema, proto.Status));
        Assert.Equal("", ObservationReporter.ToProto(recorded[3]).Rule);
    }

    [Fact]
    public async Task Audit_policies_are_recorded_as_matched_or_unmatched_and_never_change_the_decision()
    {
        const string audited = Config + """
            ---
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata: {name: suggested-orders, namespace: shop}
            spec:
              selector: {service: orders}
              action: AUDIT
              rules:
                - to: [{operation: {methods: [GET], paths: ["/orders/{*}"]}}]
            ---
            apiVersion: security.ztm.dev/v1
            kind: AuthorizationPolicy
            metadata: {name: audit-nothing, namespace: shop}
            spec:
              selector: {service: orders}
              action: AUDIT
            """;
        await using var host = await InboundTestHost.StartAsync();
        host.Apply("v1", audited, PolicyKinds.Builtin);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/orders/7", UriKind.Relative))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/orders/7/items", UriKind.Relative))).StatusCode); // outside the template: still allowed
        Assert.Equal(HttpStatusCode.Forbidden, (await http.GetAsync(new Uri("/admin", UriKind.Relative))).StatusCode);

        var recorded = new List<RequestObservation>();
        Assert.Equal(3, host.Observations.Drain(recorded, 100));
        var wire = recorded.Select(o => ObservationReporter.ToProto(o))
            .Select(o => $"{o.Path} matched[{string.Join(",", o.AuditMatched)}] unmatched[{string.Join(",", o.AuditUnmatched)}]");
        Assert.Equal(
        [
            "/orders/7 matched[shop/suggested-orders] unmatched[shop/audit-nothing]",
            "/orders/7/items matched[] unmatched[shop/audit-nothing,shop/suggested-orders]",
            "/admin matched[] unmatched[shop/audit-nothing,shop/suggested-orders]",
        ], wire);
    }

    [Fact]
    public async Task A_full_buffer_drops_and_counts_and_requests_are_served_all_the_same()
    {
        await using var host = await InboundTestHost.StartAsync(observationBuffer: 2);
        host.Apply("v1", Config, PolicyKinds.Builtin);
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri($"/orders/{i}", UriKind.Relative))).StatusCode);
        }

        Assert.Equal(2, host.Observations.Count);
        Assert.Equal(3, host.Observations.Dropped);
        using var scrape = new MemoryStream();
        await host.Metrics.Registry.CollectAndExportAsTextAsync(scrape);
        Assert.Contains("\nztm_observations_dropped_total 3\n", Encoding.UTF8.GetString(scrape.ToArray()), StringComparison.Ordinal);
        Assert.Equal(3, host.Observations.TakeDropped());
        Assert.Equal(0, host.Observations.Dropped); // said once, in the next batch
        var kept = new List<RequestObservation>();
        host.Observations.Drain(kept, 100);
        Assert.Equal(["/orders/0", "/orders/1"], kept.Select(o => o.Path)); // the oldest are kept, the newest dropped
    }
}
