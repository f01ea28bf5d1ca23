using System.Net;
using System.Net.Http.Headers;
using Xunit.Abstractions;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Tests.ApiSpec;
using ZeroTrustMesh.Sidecar.Tests.Inbound;


namespace ZeroTrustMesh.Sidecar.Tests.ApiProtection;

/// <summary>
/// What request validation adds to the allocations of a whole request through the real inbound path (connection
/// middleware, stages, YARP, the app): the load harness's valid 4 KiB order POSTed to the test app's echo route (it reads the body), with and without an
/// ApiSpec that validates it. Bytes allocated in the process are a process-wide count (caller, sidecar and app), so the
/// test runs alone and takes each side's least of three interleaved rounds; the difference is validation's. Measured
/// (optimized build) +64 B of 30,902, against +558 B before the stage's own allocations were cut; the bound here is
/// coarse (process-wide counts move by a few hundred bytes, Debug builds add state machines) and catches a return of
/// JsonSchema.Net to deciding valid bodies (~340 KB) or a copy of the body per request; the exact bound is
/// <see cref="ValidationAllocationTests"/>'s.
/// </summary>
[Collection(GarbageCollectorCollection.Name)]
public sealed class ValidationPathAllocationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private const string Open = InboundTestHost.PermissiveAndOpen;

    [Fact]
    public async Task Validation_adds_under_2_KiB_to_a_request_s_allocations()
    {
        await using var host = await InboundTestHost.StartAsync();
        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = Timeout };
        var valid = BookOrder.Body(valid: true);
        var invalid = BookOrder.Body(valid: false);

        var least = new Dictionary<bool, double> { [false] = double.MaxValue, [true] = double.MaxValue };
        var version = 0;
        for (var round = 0; round < 3; round++)
        {
            foreach (var validating in new[] { false, true })
            {
                host.Apply($"v{++version}", Open, PolicyKinds.Builtin, validating ? [ValidationAllocationTests.CatalogSpec("/echo")] : []);
                // The config in force is the one meant: the invalid order is refused exactly when it is validated.
                Assert.Equal(validating ? HttpStatusCode.BadRequest : HttpStatusCode.OK, await PostAsync(http, invalid));
                least[validating] = Math.Min(least[validating], await BytesPerRequestAsync(http, valid));
            }
        }
        var added = least[true] - least[false];
        output.WriteLine($"bytes allocated per POST of a valid {valid.Length:N0}-byte order (caller + sidecar + app), least of 3 rounds: without an ApiSpec {least[false]:0}, validated {least[true]:0}, added {added:0}");
        Assert.True(added <= 2048, $"validation adds {added:0} bytes to a request's allocations (without an ApiSpec {least[false]:0}, validated {least[true]:0})");
    }

    private static async Task<double> BytesPerRequestAsync(HttpClient http, byte[] body)
    {
        for (var i = 0; i < 200; i++)
        {
            Assert.Equal(HttpStatusCode.OK, await PostAsync(http, body)); // warm-up: JIT, pools, connections
        }
        const int requests = 1000;
        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < requests; i++)
        {
            await PostAsync(http, body);
        }
        return (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)requests;
    }

    private static async Task<HttpStatusCode> PostAsync(HttpClient http, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync(new Uri("/echo", UriKind.Relative), content);
        await response.Content.LoadIntoBufferAsync();
        return response.StatusCode;
    }
}
