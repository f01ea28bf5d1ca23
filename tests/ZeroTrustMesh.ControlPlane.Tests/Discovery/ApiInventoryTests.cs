using System.Globalization;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ZeroTrustMesh.ControlPlane.Discovery;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Tests.Discovery;

/// <summary>The API inventory as an observation consumer: templates and their evidence, bounds, the diff with a declared API, pins, snapshots, the skeleton.</summary>
public sealed class ApiInventoryTests
{
    private static readonly ObservationReporter Orders = new(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/orders"), "orders.shop");
    private const string Frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    private const string Checkout = "spiffe://cluster.local/ns/shop/sa/checkout";

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));

    [Fact]
    public void Each_endpoint_says_how_often_when_by_whom_and_with_which_status_classes()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions(), _time);
        var start = _time.GetUtcNow().AddSeconds(-5); // sent after waiting in the sidecar's buffer
        for (var i = 0; i < 40; i++)
        {
            inventory.Consume(Orders, [Observe("GET", $"/orders/{i + 1000}", i % 2 == 0 ? Frontend : Checkout, i == 7 ? 500u : 200u, start.AddSeconds(i))]);
        }
        inventory.Consume(Orders, [Observe("POST", "/orders", Frontend, 201, start)]);

        var view = inventory.Inventory("orders.shop")!;

        var get = Assert.Single(view.Endpoints, e => e.Method == "GET");
        Assert.Equal("/orders/{order}", get.Template);
        Assert.Equal(40, get.Requests);
        Assert.Equal(start, get.FirstSeen);
        Assert.Equal(start.AddSeconds(39), get.LastSeen);
        Assert.Equal([Checkout, Frontend], get.Callers);
        Assert.False(get.CallersCapped);
        Assert.Equal(
            [new CallerEvidence(Checkout, 20, start.AddSeconds(1), start.AddSeconds(39)), new CallerEvidence(Frontend, 20, start, start.AddSeconds(38))],
            get.Evidence);
        Assert.Equal(0, get.UnattributedRequests);
        Assert.Equal(39, get.StatusClasses["2xx"]);
        Assert.Equal(1, get.StatusClasses["5xx"]);
        var post = Assert.Single(view.Endpoints, e => e.Method == "POST");
        Assert.Equal("/orders", post.Template);
        Assert.Equal(41, view.Requests);
        Assert.Equal(start, view.ObservingSince); // the oldest observation, not when the first batch arrived
        Assert.Null(inventory.Inventory("payments.shop"));
    }

    [Fact]
    public void Refused_requests_and_404s_of_the_app_are_counted_but_not_inventoried()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions(), _time);

        inventory.Consume(Orders,
        [
            Observe("GET", "/orders/1", Frontend, 200),
            Observe("GET", "/admin/secrets", Frontend, 403, denied: true),
            Observe("GET", "/wp-login.php", Frontend, 404),
        ]);

        var view = inventory.Inventory("orders.shop")!;
        Assert.Equal(["/orders/{order}"], view.Endpoints.Select(e => e.Template));
        Assert.Equal((3, 1, 1), (view.Requests, view.Refused, view.NotFound));
    }

    [Fact]
    public void Millions_of_distinct_paths_stay_within_the_cap_and_what_did_not_fit_is_counted()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions { MaxPathsPerService = 100, MaxServices = 2 }, _time);

        for (var i = 0; i < 5_000; i++)
        {
            inventory.Consume(Orders, [Observe("GET", $"/files/{Word(i)}/{Word(i * 7)}", Frontend, 200)]);
        }
        var other = new ObservationReporter(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/a"), "a.shop");
        inventory.Consume(other, [Observe("GET", "/", Frontend, 200)]);
        inventory.Consume(new ObservationReporter(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/b"), "b.shop"), [Observe("GET", "/", Frontend, 200)]);

        var view = inventory.Inventory("orders.shop")!;
        Assert.True(view.OverCap > 4_800, $"over cap: {view.OverCap}");
        Assert.Equal(5_000, view.Requests);
        Assert.Equal(5_000, view.OverCap + view.Endpoints.Sum(e => e.Requests));
        Assert.Equal(100, view.MaxPaths);
        Assert.Equal(["a.shop", "orders.shop"], inventory.Services);
        Assert.Equal(1, inventory.OverServiceCap);
    }

    [Fact]
    public void Callers_are_remembered_up_to_the_cap_and_the_cap_is_said()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions { MaxCallers = 3 }, _time);

        for (var i = 0; i < 5; i++)
        {
            inventory.Consume(Orders, [Observe("GET", "/orders", $"spiffe://cluster.local/ns/shop/sa/caller{i}", 200)]);
        }

        var endpoint = Assert.Single(inventory.Inventory("orders.shop")!.Endpoints);
        Assert.Equal(3, endpoint.Callers.Count);
        Assert.True(endpoint.CallersCapped);
        Assert.Equal(5, endpoint.Requests);
        // The requests of callers that did not fit are counted, not attributed: the evidence never claims a caller it did not keep.
        Assert.Equal(3, endpoint.Evidence.Sum(c => c.Requests));
        Assert.Equal(2, endpoint.UnattributedRequests);
    }

    [Fact]
    public void The_diff_finds_shadow_and_zombie_at_once_and_unused_only_after_the_window()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions { UnusedAfter = TimeSpan.FromHours(1) }, _time);
        IReadOnlyList<DeclaredOperation> declared =
        [
            new("GET", "/orders/{orderId}"),
            new("DELETE", "/orders/{orderId}", Deprecated: true),
            new("GET", "/health"),
            new("GET", "/reports"),
        ];
        inventory.Consume(Orders,
        [
            Observe("GET", "/orders/1", Frontend, 200),
            Observe("DELETE", "/orders/2", Frontend, 204),
            Observe("GET", "/admin/dump", Frontend, 200),
            Observe("GET", "/reports", Frontend, 200),
        ]);

        Assert.Equal(["Shadow GET /admin/dump 1", "Zombie DELETE /orders/{orderId} 1"], Describe(inventory.Diff("orders.shop", declared)));

        // An hour later /reports is called again; /health and the orders were not: unused now.
        _time.Advance(TimeSpan.FromHours(1));
        inventory.Consume(Orders, [Observe("GET", "/reports", Frontend, 200, _time.GetUtcNow())]);
        Assert.Equal(
            ["Shadow GET /admin/dump 1", "Zombie DELETE /orders/{orderId} 1", "Unused GET /health 0", "Unused DELETE /orders/{orderId} 0", "Unused GET /orders/{orderId} 0"],
            Describe(inventory.Diff("orders.shop", declared)));
        var unused = inventory.Diff("orders.shop", declared).Single(f => f.Kind == ApiFindingKind.Unused && f.Method == "GET" && f.Template == "/orders/{orderId}");
        Assert.Equal(_time.GetUtcNow() - TimeSpan.FromHours(1), unused.LastSeen); // last called an hour ago
        Assert.Null(inventory.Diff("orders.shop", declared).Single(f => f.Template == "/health").LastSeen);
    }

    [Fact]
    public void Pins_make_a_segment_a_parameter_or_keep_it_a_word()
    {
        var pins = new Dictionary<string, IReadOnlyList<string>> { ["orders.shop"] = ["/users/{id}", "/users/me"] };
        var inventory = new ApiInventory(new ApiInventoryOptions { Pins = pins }, _time);

        inventory.Consume(Orders, [Observe("GET", "/users/alice", Frontend, 200), Observe("GET", "/users/me", Frontend, 200)]);

        var view = inventory.Inventory("orders.shop")!;
        Assert.Equal(["/users/me", "/users/{user}"], view.Endpoints.Select(e => e.Template));
        Assert.Equal(["/users/{id}", "/users/me"], view.Pins);
    }

    [Theory]
    [InlineData("orders.shop=/users/{id}", true, "")]
    [InlineData("orders=/users/{id}", false, "--api-pin 'orders=/users/{id}' must be SERVICE=TEMPLATE")]
    [InlineData("orders.shop=users", false, "must be SERVICE=TEMPLATE")]
    [InlineData("/users/{id}", false, "must be SERVICE=TEMPLATE")]
    public void Pin_flags_are_checked(string pin, bool valid, string error)
    {
        Assert.Equal(valid, ApiInventoryOptions.TryCreate(TimeSpan.FromHours(24), 1000, [pin], out var options, out var message));
        Assert.Contains(error, message, StringComparison.Ordinal);
        if (valid)
        {
            Assert.Equal(["/users/{id}"], options.Pins["orders.shop"]);
        }
    }

    [Fact]
    public async Task A_snapshot_in_the_data_directory_keeps_the_inventory_across_a_restart()
    {
        var dataDir = Directory.CreateTempSubdirectory("ztm-inventory-").FullName;
        try
        {
            var options = new ControlPlaneOptions
            {
                DataDir = dataDir, ListenAddress = System.Net.IPAddress.Loopback, Port = 0, TrustDomain = "cluster.local",
                SvidTtl = TimeSpan.FromHours(1), JoinTokenTtl = TimeSpan.FromMinutes(10), OperatorConfigPath = Path.Combine(dataDir, "config"),
            };
            var before = new ApiInventory(new ApiInventoryOptions(), _time);
            var snapshots = new ApiInventorySnapshots(before, options, _time, NullLogger<ApiInventorySnapshots>.Instance);
            await snapshots.StartAsync(CancellationToken.None);
            for (var i = 0; i < 12; i++)
            {
                before.Consume(Orders, [Observe("GET", $"/orders/{i}/items", i % 2 == 0 ? Frontend : Checkout, 200, _time.GetUtcNow().AddSeconds(i))]);
            }
            before.Consume(Orders, [Observe("GET", "/x", Frontend, 403, denied: true)]);
            await snapshots.StopAsync(CancellationToken.None);
            Assert.True(File.Exists(Path.Combine(dataDir, ApiInventorySnapshots.FileName)));

            var after = new ApiInventory(new ApiInventoryOptions(), _time);
            await new ApiInventorySnapshots(after, options, _time, NullLogger<ApiInventorySnapshots>.Instance).StartAsync(CancellationToken.None);

            Assert.Equal(JsonSerializer.Serialize(before.Inventory("orders.shop")), JsonSerializer.Serialize(after.Inventory("orders.shop")));
            Assert.Equal(13, after.Inventory("orders.shop")!.Requests);
            Assert.Equal([6L, 6L], after.Inventory("orders.shop")!.Endpoints.Single().Evidence.Select(c => c.Requests));

            // A damaged snapshot is not fatal: discovery starts again.
            await File.WriteAllTextAsync(Path.Combine(dataDir, ApiInventorySnapshots.FileName), "{ not json");
            var fresh = new ApiInventory(new ApiInventoryOptions(), _time);
            await new ApiInventorySnapshots(fresh, options, _time, NullLogger<ApiInventorySnapshots>.Instance).StartAsync(CancellationToken.None);
            Assert.Empty(fresh.Services);
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Fact]
    public async Task The_skeleton_is_an_OpenAPI_3_1_document_of_what_was_observed()
    {
        var inventory = new ApiInventory(new ApiInventoryOptions(), _time);
        inventory.Consume(Orders, [Observe("GET", "/orders/17/items/3", Frontend, 200), Observe("DELETE", "/orders/17", Frontend, 204), Observe("GET", "/orders/18", Frontend, 500)]);

        var json = await ApiAdminService.SkeletonDocumentAsync(inventory.Inventory("orders.shop")!, CancellationToken.None);

        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        Assert.StartsWith("3.1", root.GetProperty("openapi").GetString(), StringComparison.Ordinal);
        Assert.Equal("orders.shop", root.GetProperty("info").GetProperty("title").GetString());
        var paths = root.GetProperty("paths");
        Assert.Equal(["/orders/{order}", "/orders/{order}/items/{item}"], paths.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        var get = paths.GetProperty("/orders/{order}").GetProperty("get");
        Assert.Equal("order", get.GetProperty("parameters")[0].GetProperty("name").GetString());
        Assert.Equal("path", get.GetProperty("parameters")[0].GetProperty("in").GetString());
        Assert.True(get.GetProperty("responses").TryGetProperty("5XX", out _));
        Assert.True(paths.GetProperty("/orders/{order}").TryGetProperty("delete", out _));
    }

    private static List<string> Describe(IEnumerable<InventoryFinding> findings) =>
        [.. findings.Select(f => $"{f.Kind} {f.Method} {f.Template} {f.Requests.ToString(CultureInfo.InvariantCulture)}")];

    private Observation Observe(string method, string path, string caller, uint status, DateTimeOffset? at = null, bool denied = false) => new()
    {
        At = Timestamp.FromDateTimeOffset(at ?? _time.GetUtcNow()),
        Caller = caller,
        Method = method,
        Path = path,
        Status = status,
        Decision = denied ? Decision.Denied : Decision.Allowed,
    };

    /// <summary>A distinct lower-case word for each number (no digits: not an identifier by its shape).</summary>
    private static string Word(int n)
    {
        var chars = new List<char>();
        do
        {
            chars.Add((char)('a' + (n % 26)));
            n /= 26;
        }
        while (n > 0);
        return new string([.. chars]);
    }
}
