using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ZeroTrustMesh.KubernetesDouble;

/// <summary>
/// A small Kubernetes API server for tests: real Kestrel over HTTPS on 127.0.0.1:0 with a bearer token, the real REST
/// paths and JSON, and a generic in-memory store of objects (get, list with label selectors, create, update, patch with
/// JSON patch and merge patch — strategic merge is read as merge —, delete), with resourceVersion, uid and
/// creationTimestamp. Errors are <c>metav1.Status</c> bodies with the API server's codes and reasons: 404 NotFound,
/// 409 AlreadyExists and Conflict (resourceVersion mismatch), 422 Invalid, 415 UnsupportedMediaType, 401 Unauthorized.
/// <see cref="WriteKubeconfig"/> lets KubernetesClient (or a process) talk to it as to a real server. TokenReview
/// (<c>authentication.k8s.io/v1</c>, create only) answers for the service-account tokens the double issued
/// (<see cref="IssuePodToken"/>, <see cref="IssueToken"/>, <see cref="IssueLegacyToken"/>) as the API server would, or as
/// a test says (<see cref="AnswerReview"/>); <see cref="Stall"/> holds requests unanswered.
/// Watch (<c>?watch=true</c> on a list): a JSON-lines stream of <c>{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}</c>
/// from the given resourceVersion, with the history a test may expire (<see cref="ExpireHistory"/>: the next watch from an
/// older version gets an ERROR event with a <c>Status</c> of code 410, as the API server sends it), bookmarks on request
/// (<see cref="SendBookmarks"/>) and streams a test may cut (<see cref="DropWatches"/>). The <c>status</c> subresource
/// (PUT, PATCH) for kinds registered with <see cref="ApiResource.StatusSubresource"/>.
/// Selectors: label selectors (equality-based) and the field selectors <c>metadata.name</c> and <c>metadata.namespace</c>
/// (<c>=</c>, <c>==</c>, <c>!=</c>), on lists and watches. Not yet: other field selectors, server-side apply, other subresources.
/// </summary>
public sealed partial class KubernetesApiDouble : IAsyncDisposable
{
    /// <summary>The patch types served; server-side apply (<c>application/apply-patch+yaml</c>) is not.</summary>
    private static readonly string[] PatchTypes = ["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];

    private readonly WebApplication _app;
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Group, string Plural), ApiResource> _resources = [];
    private readonly SortedDictionary<string, JsonObject> _objects = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private readonly List<Fault> _faults = [];
    private long _resourceVersion = 1000;
    private readonly List<WatchEvent> _history = [];
    private readonly List<OpenWatch> _watches = [];
    private long _oldestWatchable;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>One change, kept for watches: the resourceVersion it made, where, the object (for selectors), and the event line.</summary>
    private sealed record WatchEvent(long Version, string Group, string Plural, string? Namespace, JsonObject Object, string Line);

    /// <summary>A watch being streamed: what it follows and its queue of lines (completed to cut the stream).</summary>
    private sealed record OpenWatch(string Group, string Plural, string? Namespace, Func<JsonObject, bool> Selects, System.Threading.Channels.Channel<string> Lines);

    private sealed class Fault(Func<HttpRequest, bool> match, int remaining, int code, string reason)
    {
        public Func<HttpRequest, bool> Match { get; } = match;
        public int Remaining { get; set; } = remaining;
        public int Code { get; } = code;
        public string Reason { get; } = reason;
    }

    private KubernetesApiDouble(WebApplication app, X509Certificate2 authority, string token)
    {
        _app = app;
        Authority = authority;
        Token = token;
        foreach (var resource in ApiResource.Builtin)
        {
            Register(resource);
        }
    }

    /// <summary>The server's base address, e.g. <c>https://127.0.0.1:40123</c>.</summary>
    public Uri Address { get; private set; } = null!;

    /// <summary>The CA the server's certificate chains to (the kubeconfig's <c>certificate-authority-data</c>).</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>The bearer token every request must carry.</summary>
    public string Token { get; }

    /// <summary>Every request answered so far, in order.</summary>
    public IReadOnlyList<RecordedRequest> Requests => [.. _requests];

    public static async Task<KubernetesApiDouble> StartAsync(ILoggerProvider? logs = null)
    {
        var (authority, serving) = CreateCertificates();
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (logs is not null)
        {
            builder.Logging.AddProvider(logs);
        }
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(serving));
        });
        var app = builder.Build();
        var server = new KubernetesApiDouble(app, authority, token);
        app.Run(server.HandleAsync);
        await app.StartAsync();
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(bound.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        return server;
    }

    /// <summary>Serves another kind (a custom resource, say) from now on.</summary>
    public void Register(ApiResource resource)
    {
        lock (_gate)
        {
            _resources[(resource.Group, resource.Plural)] = resource;
        }
    }

    /// <summary>
    /// Writes a kubeconfig naming this server, its CA and the token, for <c>KubernetesClientConfiguration.BuildConfigFromConfigFile</c>
    /// or <c>$KUBECONFIG</c> of a process.
    /// </summary>
    public void WriteKubeconfig(string path)
    {
        var ca = Convert.ToBase64String(Encoding.ASCII.GetBytes(Authority.ExportCertificatePem() + "\n"));
        var yaml = $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: double
              cluster:
                server: {Address.GetLeftPart(UriPartial.Authority)}
                certificate-authority-data: {ca}
            users:
            - name: double
              user:
                token: {Token}
            contexts:
            - name: double
              context:
                cluster: double
                user: double
                namespace: default
            current-context: double

            """;
        File.WriteAllText(path, yaml);
    }

    /// <summary>A KubernetesClient for this server (through a kubeconfig, as a real client would be set up).</summary>
    public IKubernetes CreateClient()
    {
        var path = Path.Combine(Path.GetTempPath(), $"ztm-kubeconfig-{Guid.NewGuid():N}");
        WriteKubeconfig(path);
        try
        {
            return new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Stores <paramref name="model"/> (a KubernetesClient model or any object with apiVersion, kind and metadata) as if created through the API.</summary>
    public JsonObject Seed(object model)
    {
        var node = model as JsonObject ?? JsonNode.Parse(KubernetesJson.Serialize(model))!.AsObject();
        var apiVersion = Text(node["apiVersion"]) ?? throw new ArgumentException("the object has no apiVersion", nameof(model));
        var kind = Text(node["kind"]) ?? throw new ArgumentException("the object has no kind", nameof(model));
        var (group, _) = SplitApiVersion(apiVersion);
        ApiResource resource;
        lock (_gate)
        {
            resource = _resources.Values.FirstOrDefault(r => r.Group == group && r.Kind == kind)
                ?? throw new ArgumentException($"{apiVersion} {kind} is not served", nameof(model));
        }
        var ns = resource.Namespaced ? Text(node["metadata"]?["namespace"]) ?? "default" : null;
        var (status, body) = Create(resource, ns, (JsonObject)node.DeepClone());
        return status == 201 ? body : throw new InvalidOperationException($"seed failed: {body.ToJsonString()}");
    }

    /// <summary>A copy of the stored object, or null.</summary>
    public JsonObject? Get(string apiVersion, string plural, string? ns, string name)
    {
        var (group, _) = SplitApiVersion(apiVersion);
        lock (_gate)
        {
            return _objects.TryGetValue(Key(group, plural, ns, name), out var stored) ? (JsonObject)stored.DeepClone() : null;
        }
    }

    /// <summary>The stored object as a KubernetesClient model, or null.</summary>
    public T? Get<T>(string apiVersion, string plural, string? ns, string name)
        where T : class => Get(apiVersion, plural, ns, name) is { } node ? KubernetesJson.Deserialize<T>(node) : null;

    /// <summary>
    /// Answers the next <paramref name="count"/> requests that <paramref name="match"/> with a <c>metav1.Status</c> error
    /// of <paramref name="code"/> instead of serving them (an API server that is failing, throttling, or refusing).
    /// </summary>
    public void Fail(Func<HttpRequest, bool> match, int count, int code, string reason = "InternalError")
    {
        lock (_gate)
        {
            _faults.Add(new Fault(match, count, code, reason));
        }
    }

    /// <summary>
    /// Answers the next <paramref name="count"/> requests that <paramref name="match"/> never: each is held until the
    /// client gives up (an API server that hangs). Held requests are recorded with status 0.
    /// </summary>
    public void Stall(Func<HttpRequest, bool> match, int count) => Fail(match, count, 0, "Stalled");

    /// <summary>Forgets every failure <see cref="Fail"/> or <see cref="Stall"/> armed and has not used yet (the API server heals).</summary>
    public void Heal()
    {
        lock (_gate)
        {
            _faults.Clear();
        }
    }

    /// <summary>Watches being streamed now.</summary>
    public int OpenWatches
    {
        get
        {
            lock (_gate)
            {
                return _watches.Count;
            }
        }
    }

    /// <summary>The store's resourceVersion now (the last change's).</summary>
    public string ResourceVersion
    {
        get
        {
            lock (_gate)
            {
                return _resourceVersion.ToString(CultureInfo.InvariantCulture);
            }
        }
    }

    /// <summary>
    /// Forgets the change history (etcd compaction): a watch from a resourceVersion older than now is answered with an
    /// ERROR event holding a <c>Status</c> of code 410 (Expired), and the client must list again. Open watches end (as
    /// an API server restart would end them), so that their clients' next watch meets the expired history.
    /// </summary>
    public void ExpireHistory()
    {
        lock (_gate)
        {
            _history.Clear();
            _oldestWatchable = _resourceVersion;
        }
        DropWatches();
    }

    /// <summary>Sends a BOOKMARK (the current resourceVersion, nothing else) on every open watch.</summary>
    public void SendBookmarks()
    {
        lock (_gate)
        {
            foreach (var watch in _watches)
            {
                var resource = _resources[(watch.Group, watch.Plural)];
                watch.Lines.Writer.TryWrite(EventLine("BOOKMARK", new JsonObject
                {
                    ["apiVersion"] = resource.ApiVersion,
                    ["kind"] = resource.Kind,
                    ["metadata"] = new JsonObject { ["resourceVersion"] = _resourceVersion.ToString(CultureInfo.InvariantCulture) },
                }));
            }
        }
    }

    /// <summary>Ends every open watch stream (the response completes), as a dropped connection or a server-side timeout does.</summary>
    public void DropWatches()
    {
        lock (_gate)
        {
            foreach (var watch in _watches)
            {
                watch.Lines.Writer.TryComplete();
            }
            _watches.Clear();
            Changed();
        }
    }

    /// <summary>Completes once <paramref name="condition"/> holds, checked now, after every change to the store and after every request answered.</summary>
    public async Task WaitForAsync(Func<KubernetesApiDouble, bool> condition, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                changed = _changed.Task;
            }
            if (condition(this))
            {
                return;
            }
            try
            {
                await changed.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"the condition did not hold within {timeout}; requests: {string.Join(", ", Requests.Select(r => $"{r.Method} {r.Path} {r.Status}"))}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Authority.Dispose();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        int status;
        JsonObject body;
        var fault = request.Headers.Authorization.ToString() == "Bearer " + Token ? TakeFault(request) : null;
        if (request.Headers.Authorization.ToString() != "Bearer " + Token)
        {
            (status, body) = Error(401, "Unauthorized", "Unauthorized");
        }
        else if (fault is { Code: 0 })
        {
            _requests.Enqueue(new RecordedRequest(request.Method, request.Path.Value ?? "", request.ContentType, 0));
            try
            {
                using var stopping = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _app.Lifetime.ApplicationStopping);
                await Task.Delay(Timeout.Infinite, stopping.Token);
            }
            catch (OperationCanceledException)
            {
            }
            return;
        }
        else if (fault is not null)
        {
            (status, body) = Error(fault.Code, fault.Reason, $"injected failure ({fault.Code} {fault.Reason})");
        }
        else if (request.Method == "GET" && request.Query["watch"].ToString() is "true" or "1")
        {
            await WatchAsync(context);
            return;
        }
        else
        {
            string text;
            using (var reader = new StreamReader(request.Body, Encoding.UTF8))
            {
                text = await reader.ReadToEndAsync(context.RequestAborted);
            }
            (status, body) = Serve(request.Method, request.Path.Value ?? "/", request.Query, request.ContentType, text);
        }
        _requests.Enqueue(new RecordedRequest(request.Method, request.Path.Value ?? "", request.ContentType, status) { Query = request.QueryString.Value ?? "" });
        lock (_gate)
        {
            Changed(); // a request answered is something a test may wait for, too
        }
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }

    private Fault? TakeFault(HttpRequest request)
    {
        lock (_gate)
        {
            var fault = _faults.FirstOrDefault(f => f.Remaining > 0 && f.Match(request));
            if (fault is not null)
            {
                fault.Remaining--;
            }
            return fault;
        }
    }

    private (int Status, JsonObject Body) Serve(string method, string path, IQueryCollection query, string? contentType, string text)
    {
        if (Route(path) is not { } route)
        {
            return Error(404, "NotFound", "the server could not find the requested resource");
        }
        var (resource, ns, name, subresource) = route;
        if (method == "PATCH" && !PatchTypes.Contains(contentType?.Split(';', 2)[0].Trim() ?? ""))
        {
            return Error(415, "UnsupportedMediaType", $"the body of the request was in an unknown format - accepted media types include: {string.Join(", ", PatchTypes)} (got {contentType})");
        }
        JsonNode? input = null;
        if (method is "POST" or "PUT" or "PATCH")
        {
            try
            {
                input = JsonNode.Parse(text);
            }
            catch (JsonException e)
            {
                return Error(400, "BadRequest", $"the body is not JSON: {e.Message}");
            }
        }
        lock (_gate)
        {
            if (resource.Group == "authentication.k8s.io" && resource.Plural == "tokenreviews")
            {
                return method == "POST" && name is null && input is JsonObject review
                    ? Review(review)
                    : Error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
            }
            if (subresource is not null)
            {
                return (method, input) switch
                {
                    ("GET", _) => Read(resource, ns, name!),
                    ("PUT", JsonObject replaced) => WriteStatus(resource, ns, name!, stored => replaced),
                    ("PATCH", _) => WriteStatus(resource, ns, name!, stored => PatchOf(stored, contentType, input)),
                    _ => Error(405, "MethodNotAllowed", $"{method} is not supported on {path}"),
                };
            }
            return (method, name) switch
            {
                ("GET", null) => List(resource, ns, query["labelSelector"].ToString(), query["fieldSelector"].ToString()),
                ("GET", _) => Read(resource, ns, name),
                ("POST", null) when input is JsonObject created => Create(resource, ns, created),
                ("POST", null) => Error(400, "BadRequest", "the body is not an object"),
                ("PUT", not null) when input is JsonObject replaced => Update(resource, ns, name, replaced),
                ("PUT", not null) => Error(400, "BadRequest", "the body is not an object"),
                ("PATCH", not null) => Patch(resource, ns, name, contentType, input),
                ("DELETE", not null) => Delete(resource, ns, name),
                _ => Error(405, "MethodNotAllowed", $"{method} is not supported on {path}"),
            };
        }
    }

    /// <summary>/api/v1[/namespaces/NS]/PLURAL[/NAME] and /apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME].</summary>
    private (ApiResource Resource, string? Namespace, string? Name, string? Subresource)? Route(string path)
    {
        var parts = path.Trim('/').Split('/');
        string group, version;
        string[] rest;
        if (parts.Length >= 3 && parts[0] == "api")
        {
            (group, version, rest) = ("", parts[1], parts[2..]);
        }
        else if (parts.Length >= 4 && parts[0] == "apis")
        {
            (group, version, rest) = (parts[1], parts[2], parts[3..]);
        }
        else
        {
            return null;
        }
        string? ns = null;
        if (rest.Length >= 3 && rest[0] == "namespaces")
        {
            ns = rest[1];
            rest = rest[2..];
        }
        string? subresource = null;
        if (rest.Length == 3 && rest[2] == "status")
        {
            subresource = "status";
            rest = rest[..2];
        }
        if (rest.Length is < 1 or > 2)
        {
            return null; // other subresources are not served
        }
        lock (_gate)
        {
            if (!_resources.TryGetValue((group, rest[0]), out var resource) || resource.Version != version || (ns is not null && !resource.Namespaced))
            {
                return null;
            }
            if (resource.Namespaced && ns is null && rest.Length == 2)
            {
                return null; // a namespaced object is addressed through its namespace
            }
            if (subresource is not null && !resource.StatusSubresource)
            {
                return null;
            }
            return (resource, ns, rest.Length == 2 ? rest[1] : null, subresource);
        }
    }

    private (int, JsonObject) Read(ApiResource resource, string? ns, string name) =>
        _objects.TryGetValue(Key(resource.Group, resource.Plural, ns, name), out var stored)
            ? (200, (JsonObject)stored.DeepClone())
            : NotFound(resource, name);

    private (int, JsonObject) List(ApiResource resource, string? ns, string labelSelector, string fieldSelector)
    {
        var prefix = resource.Namespaced && ns is not null ? Key(resource.Group, resource.Plural, ns, "") : $"{resource.Group}|{resource.Plural}|";
        if (Selector(labelSelector, fieldSelector, out var error) is not { } selects)
        {
            return Error(400, "BadRequest", error!);
        }
        var items = new JsonArray();
        foreach (var (key, value) in _objects)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal) && selects(value))
            {
                items.Add(value.DeepClone());
            }
        }
        return (200, new JsonObject
        {
            ["apiVersion"] = resource.ApiVersion,
            ["kind"] = resource.Kind + "List",
            ["metadata"] = new JsonObject { ["resourceVersion"] = _resourceVersion.ToString(CultureInfo.InvariantCulture) },
            ["items"] = items,
        });
    }

    private (int, JsonObject) Create(ApiResource resource, string? ns, JsonObject body)
    {
        var metadata = body["metadata"] as JsonObject ?? new JsonObject();
        body["metadata"] = metadata;
        var bodyNamespace = Text(metadata["namespace"]);
        if (resource.Namespaced && bodyNamespace is not null && ns is not null && bodyNamespace != ns)
        {
            return Error(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
        }
        if (resource.Namespaced && ns is null)
        {
            return Error(405, "MethodNotAllowed", $"create {resource.Plural} through a namespace");
        }
        if (Text(metadata["name"]) is not { Length: > 0 } && Text(metadata["generateName"]) is { Length: > 0 } generate)
        {
            metadata["name"] = generate + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))[..5];
        }
        if (Text(metadata["name"]) is not { Length: > 0 } name)
        {
            return Invalid(resource, "", "metadata.name: Required value: name or generateName is required");
        }
        var key = Key(resource.Group, resource.Plural, ns, name);
        if (_objects.ContainsKey(key))
        {
            return Error(409, "AlreadyExists", $"{resource.Plural} \"{name}\" already exists", resource, name);
        }
        body["apiVersion"] = resource.ApiVersion;
        body["kind"] = resource.Kind;
        if (ns is not null)
        {
            metadata["namespace"] = ns;
        }
        if (resource.StatusSubresource)
        {
            metadata["generation"] = 1L;
            body.Remove("status"); // written only through /status
        }
        metadata["uid"] = Guid.NewGuid().ToString();
        metadata["creationTimestamp"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        return Store(key, body, 201);
    }

    private (int, JsonObject) Update(ApiResource resource, string? ns, string name, JsonObject body)
    {
        var key = Key(resource.Group, resource.Plural, ns, name);
        if (!_objects.TryGetValue(key, out var stored))
        {
            return NotFound(resource, name);
        }
        var metadata = body["metadata"] as JsonObject ?? new JsonObject();
        body["metadata"] = metadata;
        if (Text(metadata["name"]) != name)
        {
            return Error(400, "BadRequest", "the name of the object does not match the name on the URL");
        }
        return Replace(resource, key, name, stored, body);
    }

    private (int, JsonObject) Patch(ApiResource resource, string? ns, string name, string? contentType, JsonNode? patch)
    {
        var key = Key(resource.Group, resource.Plural, ns, name);
        var mediaType = contentType?.Split(';', 2)[0].Trim();
        if (!_objects.TryGetValue(key, out var stored))
        {
            return NotFound(resource, name);
        }
        JsonNode? patched;
        try
        {
            patched = mediaType == "application/json-patch+json" ? JsonPatch.Apply(stored, patch) : JsonPatch.Merge(stored, patch);
        }
        catch (PatchException e) when (e.Malformed)
        {
            return Error(400, "BadRequest", e.Message);
        }
        catch (PatchException e)
        {
            return Invalid(resource, name, e.Message);
        }
        if (patched is not JsonObject result)
        {
            return Invalid(resource, name, "the patched object is not an object");
        }
        if (result["metadata"] is not JsonObject metadata || Text(metadata["name"]) != name)
        {
            return Invalid(resource, name, "metadata.name: Invalid value: the name cannot be changed");
        }
        return Replace(resource, key, name, stored, result);
    }

    /// <summary>An update of a stored object: a resourceVersion in the body must be the stored one (optimistic concurrency).</summary>
    private (int, JsonObject) Replace(ApiResource resource, string key, string name, JsonObject stored, JsonObject body)
    {
        var metadata = (JsonObject)body["metadata"]!;
        var storedMetadata = (JsonObject)stored["metadata"]!;
        if (Text(metadata["resourceVersion"]) is { Length: > 0 } version && version != Text(storedMetadata["resourceVersion"]))
        {
            return Error(409, "Conflict", $"Operation cannot be fulfilled on {resource.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", resource, name);
        }
        body["apiVersion"] = resource.ApiVersion;
        body["kind"] = resource.Kind;
        foreach (var kept in new[] { "uid", "creationTimestamp", "namespace", "name" })
        {
            metadata[kept] = storedMetadata[kept]?.DeepClone();
        }
        if (resource.StatusSubresource)
        {
            // The status is the /status subresource's; the generation counts changes of everything else (the spec).
            body.Remove("status");
            if (stored["status"] is { } status)
            {
                body["status"] = status.DeepClone();
            }
            var generation = long.TryParse(storedMetadata["generation"]?.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : 1;
            metadata["generation"] = JsonNode.DeepEquals(body["spec"], stored["spec"]) ? generation : generation + 1;
        }
        return Store(key, body, 200);
    }

    /// <summary>A write of the status subresource: only <c>status</c> of <paramref name="write"/>'s result is kept.</summary>
    private (int, JsonObject) WriteStatus(ApiResource resource, string? ns, string name, Func<JsonObject, JsonNode?> write)
    {
        var key = Key(resource.Group, resource.Plural, ns, name);
        if (!_objects.TryGetValue(key, out var stored))
        {
            return NotFound(resource, name);
        }
        JsonNode? written;
        try
        {
            written = write((JsonObject)stored.DeepClone());
        }
        catch (PatchException e) when (e.Malformed)
        {
            return Error(400, "BadRequest", e.Message);
        }
        catch (PatchException e)
        {
            return Invalid(resource, name, e.Message);
        }
        if (written is not JsonObject result)
        {
            return Error(400, "BadRequest", "the body is not an object");
        }
        if (Text(result["metadata"]?["resourceVersion"]) is { Length: > 0 } version && version != Text(stored["metadata"]?["resourceVersion"]))
        {
            return Error(409, "Conflict", $"Operation cannot be fulfilled on {resource.Plural}.{resource.Group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", resource, name);
        }
        var next = (JsonObject)stored.DeepClone();
        next.Remove("status");
        if (result["status"] is { } status)
        {
            next["status"] = status.DeepClone();
        }
        return Store(key, next, 200);
    }

    private static JsonNode? PatchOf(JsonObject stored, string? contentType, JsonNode? patch) =>
        contentType?.Split(';', 2)[0].Trim() == "application/json-patch+json" ? JsonPatch.Apply(stored, patch) : JsonPatch.Merge(stored, patch);

    private (int, JsonObject) Delete(ApiResource resource, string? ns, string name)
    {
        var key = Key(resource.Group, resource.Plural, ns, name);
        if (!_objects.Remove(key, out var removed))
        {
            return NotFound(resource, name);
        }
        var deletedAt = ++_resourceVersion;
        ((JsonObject)removed["metadata"]!)["resourceVersion"] = deletedAt.ToString(CultureInfo.InvariantCulture);
        Emit(deletedAt, resource, ns, "DELETED", removed);
        Changed();
        if (resource.ReturnsDeletedObject)
        {
            return (200, removed);
        }
        return (200, new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Success",
            ["details"] = new JsonObject { ["name"] = name, ["kind"] = resource.Plural, ["uid"] = removed["metadata"]?["uid"]?.DeepClone() },
        });
    }

    private (int, JsonObject) Store(string key, JsonObject body, int status)
    {
        var version = ++_resourceVersion;
        ((JsonObject)body["metadata"]!)["resourceVersion"] = version.ToString(CultureInfo.InvariantCulture);
        _objects[key] = body;
        var parts = key.Split('|');
        if (_resources.TryGetValue((parts[0], parts[1]), out var resource))
        {
            Emit(version, resource, parts[2].Length > 0 ? parts[2] : null, status == 201 ? "ADDED" : "MODIFIED", body);
        }
        Changed();
        return (status, (JsonObject)body.DeepClone());
    }

    /// <summary>Keeps the change for later watches and sends it to the open ones that follow its kind (and namespace).</summary>
    private void Emit(long version, ApiResource resource, string? ns, string type, JsonObject body)
    {
        var line = EventLine(type, body);
        _history.Add(new WatchEvent(version, resource.Group, resource.Plural, ns, body, line));
        foreach (var watch in _watches)
        {
            if (watch.Group == resource.Group && watch.Plural == resource.Plural && (watch.Namespace is null || watch.Namespace == ns) && watch.Selects(body))
            {
                watch.Lines.Writer.TryWrite(line);
            }
        }
    }

    private static string EventLine(string type, JsonObject body) =>
        new JsonObject { ["type"] = type, ["object"] = body.DeepClone() }.ToJsonString();

    /// <summary>
    /// A watch: HTTP 200 and one JSON line per event, flushed as it happens, until the client goes, the test drops the
    /// stream, or the server stops. From resourceVersion "" or "0": every current object as ADDED first (as the API
    /// server does); from an older version than the history holds: one ERROR event with a 410 Status, then the end.
    /// </summary>
    private async Task WatchAsync(HttpContext context)
    {
        var request = context.Request;
        var path = request.Path.Value ?? "/";
        if (Route(path) is not { Name: null, Subresource: null } route)
        {
            var (code, error) = Error(404, "NotFound", "the server could not find the requested resource");
            _requests.Enqueue(new RecordedRequest("WATCH", path, null, code));
            context.Response.StatusCode = code;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(error.ToJsonString(), context.RequestAborted);
            return;
        }
        var (resource, ns, _, _) = route;
        var from = request.Query["resourceVersion"].ToString();
        if (Selector(request.Query["labelSelector"].ToString(), request.Query["fieldSelector"].ToString(), out var selectorError) is not { } selects)
        {
            var (code, error) = Error(400, "BadRequest", selectorError!);
            _requests.Enqueue(new RecordedRequest("WATCH", path, null, code));
            context.Response.StatusCode = code;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(error.ToJsonString(), context.RequestAborted);
            return;
        }
        var lines = System.Threading.Channels.Channel.CreateUnbounded<string>();
        var watch = new OpenWatch(resource.Group, resource.Plural, ns, selects, lines);
        lock (_gate)
        {
            if (from is "" or "0")
            {
                var prefix = resource.Namespaced && ns is not null ? Key(resource.Group, resource.Plural, ns, "") : $"{resource.Group}|{resource.Plural}|";
                foreach (var (key, value) in _objects.Where(o => o.Key.StartsWith(prefix, StringComparison.Ordinal) && selects(o.Value)))
                {
                    lines.Writer.TryWrite(EventLine("ADDED", value));
                }
                _watches.Add(watch);
            }
            else if (!long.TryParse(from, NumberStyles.None, CultureInfo.InvariantCulture, out var version) || version < _oldestWatchable)
            {
                var (_, gone) = Error(410, "Expired", $"too old resource version: {from} ({_oldestWatchable})");
                lines.Writer.TryWrite(EventLine("ERROR", gone));
                lines.Writer.TryComplete();
            }
            else
            {
                foreach (var change in _history.Where(e => e.Version > version && e.Group == resource.Group && e.Plural == resource.Plural && (ns is null || e.Namespace == ns) && selects(e.Object)))
                {
                    lines.Writer.TryWrite(change.Line);
                }
                _watches.Add(watch);
            }
            Changed();
        }
        _requests.Enqueue(new RecordedRequest("WATCH", path, null, 200) { Query = request.QueryString.Value ?? "" });
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _app.Lifetime.ApplicationStopping);
        try
        {
            await context.Response.StartAsync(stopping.Token);
            await foreach (var line in lines.Reader.ReadAllAsync(stopping.Token))
            {
                await context.Response.WriteAsync(line + "\n", stopping.Token);
                await context.Response.Body.FlushAsync(stopping.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // the client went, or the server stops
        }
        catch (IOException)
        {
            // the connection is gone
        }
        finally
        {
            lock (_gate)
            {
                _watches.Remove(watch);
                Changed();
            }
        }
    }

    private void Changed()
    {
        var changed = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.SetResult();
    }

    private static (int, JsonObject) NotFound(ApiResource resource, string name) =>
        Error(404, "NotFound", $"{resource.Plural}{(resource.Group.Length > 0 ? "." + resource.Group : "")} \"{name}\" not found", resource, name);

    private static (int, JsonObject) Invalid(ApiResource resource, string name, string message) =>
        Error(422, "Invalid", $"{resource.Kind} \"{name}\" is invalid: {message}", resource, name);

    /// <summary>A <c>metav1.Status</c> failure, as the API server writes it.</summary>
    private static (int, JsonObject) Error(int code, string reason, string message, ApiResource? resource = null, string? name = null)
    {
        var status = new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Failure",
            ["message"] = message,
            ["reason"] = reason,
        };
        if (resource is not null)
        {
            var details = new JsonObject { ["name"] = name, ["kind"] = resource.Plural };
            if (resource.Group.Length > 0)
            {
                details["group"] = resource.Group;
            }
            status["details"] = details;
        }
        status["code"] = code;
        return (code, status);
    }

    /// <summary>What a label selector and a field selector together select; null (and why) when one does not parse.</summary>
    private static Func<JsonObject, bool>? Selector(string labelSelector, string fieldSelector, out string? error)
    {
        error = null;
        var labels = ParseSelector(labelSelector);
        if (labels is null)
        {
            error = $"unable to parse requirement: labelSelector '{labelSelector}'";
            return null;
        }
        var fields = ParseSelector(fieldSelector);
        if (fields is null || fields.Any(f => f.Value is null))
        {
            error = $"invalid field selector: '{fieldSelector}'";
            return null;
        }
        if (fields.FirstOrDefault(f => f.Key is not ("metadata.name" or "metadata.namespace")) is { Key: { } unknown })
        {
            error = $"field label not supported: {unknown}";
            return null;
        }
        return item => Matches(item, labels) && fields.All(f => (Text(item["metadata"]?[f.Key["metadata.".Length..]]) == f.Value) == f.Equal);
    }

    /// <summary>Equality-based selectors: <c>k=v</c>, <c>k==v</c>, <c>k!=v</c>, <c>k</c>, <c>!k</c>, comma-joined; null when one does not parse.</summary>
    private static List<(string Key, string? Value, bool Equal)>? ParseSelector(string selector)
    {
        var requirements = new List<(string, string?, bool)>();
        foreach (var part in selector.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.Contains("!=", StringComparison.Ordinal))
            {
                var pair = part.Split("!=", 2);
                requirements.Add((pair[0].Trim(), pair[1].Trim(), false));
            }
            else if (part.Contains('=', StringComparison.Ordinal))
            {
                var pair = part.Split(part.Contains("==", StringComparison.Ordinal) ? "==" : "=", 2);
                requirements.Add((pair[0].Trim(), pair[1].Trim(), true));
            }
            else if (part.StartsWith('!'))
            {
                requirements.Add((part[1..], null, false));
            }
            else if (part.Contains(' ', StringComparison.Ordinal))
            {
                return null; // set-based selectors (in, notin) are not served
            }
            else
            {
                requirements.Add((part, null, true));
            }
        }
        return requirements;
    }

    private static bool Matches(JsonObject item, List<(string Key, string? Value, bool Equal)> selector)
    {
        var labels = item["metadata"]?["labels"] as JsonObject;
        foreach (var (key, value, equal) in selector)
        {
            var actual = labels is not null && labels.TryGetPropertyValue(key, out var node) ? Text(node) : null;
            var holds = value is null ? actual is not null : actual == value;
            if (holds != equal)
            {
                return false;
            }
        }
        return true;
    }

    private static string Key(string group, string plural, string? ns, string name) => $"{group}|{plural}|{ns}|{name}";

    private static (string Group, string Version) SplitApiVersion(string apiVersion) =>
        apiVersion.Contains('/', StringComparison.Ordinal) ? (apiVersion.Split('/')[0], apiVersion.Split('/')[1]) : ("", apiVersion);

    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>A CA and a server certificate for 127.0.0.1 and localhost signed by it, both in memory.</summary>
    private static (X509Certificate2 Authority, X509Certificate2 Serving) CreateCertificates()
    {
        var now = DateTimeOffset.UtcNow;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=kubernetes-double-ca", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var authorityWithKey = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=kubernetes-double", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var leaf = request.Create(authorityWithKey, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
        var serving = X509CertificateLoader.LoadPkcs12(leaf.CopyWithPrivateKey(key).Export(X509ContentType.Pkcs12), null);
        return (X509CertificateLoader.LoadCertificate(authorityWithKey.RawData), serving);
    }
}
