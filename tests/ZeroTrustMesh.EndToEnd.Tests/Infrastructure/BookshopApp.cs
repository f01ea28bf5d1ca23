using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// The bookshop of <c>examples/api/bookshop-openapi.yaml</c> as a deliberately careless app (crAPI/VAmPI style): it
/// serves any user's data to anyone who asks by ID, and its user objects carry a password, an SSN and internal flags.
/// Kestrel on 127.0.0.1:0; it counts the requests that reached it, so a test can tell that a refused one never did.
/// </summary>
internal sealed class BookshopApp : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _requests;

    private BookshopApp(WebApplication app) => _app = app;

    public int Port { get; private set; }

    /// <summary>Requests that reached the app.</summary>
    public int Requests => Volatile.Read(ref _requests);

    public static JsonObject User(string id) => new()
    {
        ["id"] = id,
        ["name"] = $"User {id}",
        ["email"] = $"{id}@bookshop.example",
        ["password"] = "hunter2",
        ["ssn"] = "078-05-1120",
        ["role"] = "customer",
        ["isAdmin"] = false,
        ["address"] = new JsonObject { ["street"] = "1 Main St", ["city"] = "Springfield", ["internalRoute"] = "R-17" },
    };

    public static async Task<BookshopApp> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0);
            k.Limits.MaxRequestBodySize = 64 * 1024 * 1024;
        });
        var app = builder.Build();
        var shop = new BookshopApp(app);
        app.Run(shop.HandleAsync);
        await app.StartAsync();
        shop.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        return shop;
    }

    private async Task HandleAsync(HttpContext context)
    {
        Interlocked.Increment(ref _requests);
        var segments = context.Request.Path.Value!.Split('/', StringSplitOptions.RemoveEmptyEntries);
        using var reader = new StreamReader(context.Request.Body);
        var body = await reader.ReadToEndAsync();
        JsonNode? answer = (context.Request.Method, segments) switch
        {
            ("GET", ["users"]) => new JsonObject { ["users"] = new JsonArray(User("alice"), User("bob")), ["total"] = 2 },
            ("GET", ["users", var id]) => User(id),
            ("GET", ["users", _, "orders"]) => new JsonArray(new JsonObject { ["id"] = 1, ["bookId"] = 7, ["quantity"] = 1 }),
            ("POST", ["users", _, "orders"]) => new JsonObject { ["id"] = 2, ["received"] = body.Length },
            ("GET", ["books", var id]) => new JsonObject { ["id"] = int.Parse(id, System.Globalization.CultureInfo.InvariantCulture), ["title"] = "Dune" },
            ("GET", ["books"]) => new JsonArray(new JsonObject { ["id"] = 7, ["title"] = "Dune" }),
            _ => new JsonObject { ["path"] = context.Request.Path.Value, ["method"] = context.Request.Method, ["received"] = body.Length },
        };
        context.Response.StatusCode = context.Request.Method == "POST" && segments is ["users", _, "orders"] ? 201 : 200;
        context.Response.ContentType = "application/json; charset=utf-8";
        await context.Response.WriteAsync(answer!.ToJsonString());
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
