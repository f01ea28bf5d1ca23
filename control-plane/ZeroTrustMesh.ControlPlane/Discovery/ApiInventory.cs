using System.Collections.Concurrent;
using ZeroTrustMesh.ControlPlane.Observations;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.ControlPlane.Discovery;

/// <summary>How the API inventory is bounded and compared (<c>--api-*</c> flags of the control plane).</summary>
internal sealed record ApiInventoryOptions
{
    /// <summary>Distinct path segments kept per service (<c>--api-max-paths</c>); new paths beyond it are counted, not kept.</summary>
    public int MaxPathsPerService { get; init; } = 20_000;

    /// <summary>Services with an inventory; observations of a service beyond it are counted, not kept.</summary>
    public int MaxServices { get; init; } = 2_000;

    /// <summary>
    /// Distinct callers remembered per endpoint (method and path shape), each with its count and first and last time
    /// (the evidence <c>ztmctl policy suggest</c> writes); requests of further callers are counted in the endpoint but
    /// not per caller, and the endpoint says it was capped.
    /// </summary>
    public int MaxCallers { get; init; } = 64;

    /// <summary>A declared operation not called for this long is unused (<c>--api-unused-after</c>).</summary>
    public TimeSpan UnusedAfter { get; init; } = TimeSpan.FromHours(24);

    /// <summary>The operator's templates per service (<c>--api-pin SERVICE=TEMPLATE</c>), see <see cref="PathInventoryOptions.Pins"/>.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Pins { get; init; } = new Dictionary<string, IReadOnlyList<string>>();

    /// <summary>The options from the control plane's flags, or the first thing wrong with them (one line, naming the flag).</summary>
    public static bool TryCreate(TimeSpan unusedAfter, int maxPaths, IReadOnlyList<string> pins, out ApiInventoryOptions options, out string error)
    {
        options = new ApiInventoryOptions();
        error = "";
        if (unusedAfter <= TimeSpan.Zero)
        {
            error = "--api-unused-after must be positive";
            return false;
        }
        if (maxPaths is < 16 or > 10_000_000)
        {
            error = $"--api-max-paths {maxPaths} must be between 16 and 10000000";
            return false;
        }
        var byService = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var pin in pins)
        {
            var equals = pin.IndexOf('=', StringComparison.Ordinal);
            var service = equals > 0 ? pin[..equals] : "";
            var template = equals > 0 ? pin[(equals + 1)..] : "";
            if (service.Length == 0 || !service.Contains('.', StringComparison.Ordinal) || !template.StartsWith('/') || template.Any(c => char.IsWhiteSpace(c) || c is '?' or '#'))
            {
                error = $"--api-pin '{pin}' must be SERVICE=TEMPLATE, e.g. orders.shop=/users/{{id}} (the service with its namespace, the template an absolute path)";
                return false;
            }
            if (!byService.TryGetValue(service, out var list))
            {
                byService[service] = list = [];
            }
            list.Add(template);
        }
        options = new ApiInventoryOptions
        {
            UnusedAfter = unusedAfter,
            MaxPathsPerService = maxPaths,
            Pins = byService.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)p.Value, StringComparer.Ordinal),
        };
        return true;
    }
}

/// <summary>One observed endpoint of a service: a method and a template (parameters named), with what was seen of it.</summary>
internal sealed record InventoryEndpoint(
    string Method,
    string Template,
    long Requests,
    DateTimeOffset FirstSeen,
    DateTimeOffset LastSeen,
    IReadOnlyList<string> Callers,
    bool CallersCapped,
    IReadOnlyDictionary<string, long> StatusClasses)
{
    /// <summary>Per caller: how often, first and last (ordered by caller), for the callers in <see cref="Callers"/>.</summary>
    public IReadOnlyList<CallerEvidence> Evidence { get; init; } = [];

    /// <summary>Requests of callers beyond the cap, counted in <see cref="Requests"/> and not per caller.</summary>
    public long UnattributedRequests { get; init; }
}

/// <summary>One caller of one endpoint: how often, and when first and last.</summary>
internal sealed record CallerEvidence(string Caller, long Requests, DateTimeOffset FirstSeen, DateTimeOffset LastSeen);

/// <summary>A service's inventory at one moment (<c>ztmctl api inventory</c>).</summary>
internal sealed record ServiceInventoryView(
    string Service,
    DateTimeOffset ObservingSince,
    IReadOnlyList<InventoryEndpoint> Endpoints,
    long Requests,
    long Refused,
    long NotFound,
    long OverCap,
    int MaxPaths,
    IReadOnlyList<string> Pins);

/// <summary>A finding of the comparison with the ApiSpec, with when the endpoint was last called (null: never).</summary>
internal sealed record InventoryFinding(ApiFindingKind Kind, string Method, string Template, long Requests, DateTimeOffset? LastSeen);

/// <summary>
/// The API inventory (issue 19, section 2): a consumer of sidecars' observations that keeps, per service (<c>sa.ns</c>,
/// the reporter's own), a <see cref="PathInventory"/> of the paths its app answered and, per method and path shape, how
/// often, when first and last, by whom (up to <see cref="ApiInventoryOptions.MaxCallers"/>) and with which status
/// classes. Templates are decided when asked (<see cref="Inventory"/>), so they improve as traffic arrives.
/// Requests the sidecar refused never reached the app and say nothing about its API: they are only counted; nor do 404s
/// from the app (a path that does not exist). Memory is bounded: paths per service, services, callers per endpoint;
/// what did not fit is counted and shown.
/// </summary>
internal sealed class ApiInventory(ApiInventoryOptions options, TimeProvider time) : IObservationConsumer
{
    private readonly ConcurrentDictionary<string, ServiceState> _services = new(StringComparer.Ordinal);
    private long _overServiceCap;
    private long _changes;

    public ApiInventoryOptions Options => options;

    /// <summary>Observations of services beyond <see cref="ApiInventoryOptions.MaxServices"/>, counted and not kept.</summary>
    public long OverServiceCap => Interlocked.Read(ref _overServiceCap);

    /// <summary>Grows with every change: the snapshot writer saves only when it moved.</summary>
    public long Changes => Interlocked.Read(ref _changes);

    public IReadOnlyList<string> Services => [.. _services.Keys.Order(StringComparer.Ordinal)];

    public void Consume(ObservationReporter reporter, IReadOnlyList<Observation> observations)
    {
        if (observations.Count == 0 || State(reporter.Service) is not { } state)
        {
            return;
        }
        foreach (var o in observations)
        {
            state.Observe(o.Method, o.Path, o.At.ToDateTimeOffset(), o.Caller, (int)o.Status, refused: o.Decision == Decision.Denied);
        }
        Interlocked.Increment(ref _changes);
    }

    /// <summary>The inventory of <paramref name="service"/>, or null when nothing of it was observed.</summary>
    public ServiceInventoryView? Inventory(string service) =>
        _services.TryGetValue(service, out var state) ? state.View(service, options) : null;

    /// <summary>
    /// <paramref name="service"/>'s inventory against its declared operations: shadow (called, not declared) and zombie
    /// (declared deprecated, still called) over everything observed; unused (declared, not called within
    /// <see cref="ApiInventoryOptions.UnusedAfter"/>) only once the service has been observed that long — before, nobody knows.
    /// </summary>
    public IReadOnlyList<InventoryFinding> Diff(string service, IReadOnlyList<DeclaredOperation> declared)
    {
        var view = Inventory(service);
        var endpoints = view?.Endpoints ?? [];
        var lastSeen = endpoints.ToDictionary(e => (e.Method, e.Template), e => e.LastSeen);
        var findings = ApiDiff.Compare(declared, [.. endpoints.Select(e => new ObservedOperation(e.Method, e.Template, e.Requests))])
            .Where(f => f.Kind != ApiFindingKind.Unused)
            .Select(f => new InventoryFinding(f.Kind, f.Method, f.Template, f.Requests, f.Kind == ApiFindingKind.Shadow ? lastSeen[(f.Method, f.Template)] : LastCall(f, endpoints)))
            .ToList();
        var now = time.GetUtcNow();
        if (view is not null && now - view.ObservingSince >= options.UnusedAfter)
        {
            var recent = endpoints.Where(e => now - e.LastSeen < options.UnusedAfter).Select(e => new ObservedOperation(e.Method, e.Template, e.Requests)).ToList();
            findings.AddRange(ApiDiff.Compare(declared, recent).Where(f => f.Kind == ApiFindingKind.Unused)
                .Select(f => new InventoryFinding(f.Kind, f.Method, f.Template, 0, LastCall(f, endpoints))));
        }
        return [.. findings.OrderBy(f => f.Kind).ThenBy(f => f.Template, StringComparer.Ordinal).ThenBy(f => f.Method, StringComparer.Ordinal)];

        // When a declared operation was last called: the latest of the observed endpoints it covers.
        static DateTimeOffset? LastCall(ApiFinding finding, IReadOnlyList<InventoryEndpoint> endpoints) =>
            endpoints.Where(e => string.Equals(e.Method, finding.Method, StringComparison.OrdinalIgnoreCase) && ApiDiff.Covers(finding.Template, e.Template))
                .Select(e => (DateTimeOffset?)e.LastSeen).Max();
    }

    /// <summary>What a snapshot holds, to be loaded back after a restart (<see cref="Restore"/>).</summary>
    public IReadOnlyList<ServiceRecord> Records() =>
        [.. _services.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => s.Value.Record(s.Key))];

    public void Restore(IEnumerable<ServiceRecord> records)
    {
        foreach (var record in records)
        {
            State(record.Service)?.Restore(record);
        }
    }

    private ServiceState? State(string service)
    {
        if (_services.TryGetValue(service, out var state))
        {
            return state;
        }
        if (_services.Count >= options.MaxServices)
        {
            Interlocked.Increment(ref _overServiceCap);
            return null;
        }
        return _services.GetOrAdd(service, s => new ServiceState(new PathInventory(new PathInventoryOptions
        {
            MaxNodes = options.MaxPathsPerService,
            Pins = options.Pins.TryGetValue(s, out var pins) ? pins : [],
        }), time.GetUtcNow(), options.MaxCallers));
    }

    /// <summary>One service's paths and endpoint statistics; statistics are kept per method and path shape (identifiers collapsed), as many as the trie keeps paths.</summary>
    private sealed class ServiceState(PathInventory paths, DateTimeOffset since, int maxCallers)
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<(string Method, string Shape), Stats> _stats = [];
        private DateTimeOffset _since = since;
        private long _requests;
        private long _refused;
        private long _notFound;
        private long _overCap;

        public void Observe(string method, string path, DateTimeOffset at, string caller, int status, bool refused)
        {
            lock (_lock)
            {
                _requests++;
                _since = at < _since ? at : _since; // observations that waited in a sidecar's buffer are older than the first batch
                if (refused)
                {
                    _refused++;
                    return;
                }
                if (status == 404)
                {
                    _notFound++;
                    return;
                }
                // As the trie keeps it: a value it took as a parameter for room does not make one more statistics entry.
                if (paths.Keep(method, Shape(path)) is not { } shape)
                {
                    return; // a new path over the cap: counted by the trie (Dropped)
                }
                if (!_stats.TryGetValue((method, shape), out var stats))
                {
                    if (_stats.Count >= paths.MaxNodes * 2)
                    {
                        _overCap++; // many methods on the same paths
                        return;
                    }
                    _stats[(method, shape)] = stats = new Stats { FirstSeen = at, LastSeen = at };
                }
                stats.Add(at, caller, status, maxCallers);
            }
        }

        public ServiceInventoryView View(string service, ApiInventoryOptions options)
        {
            lock (_lock)
            {
                var operations = paths.Operations();
                var byMethod = operations.GroupBy(o => o.Method, StringComparer.Ordinal).ToDictionary(g => g.Key, g => (IReadOnlyList<ObservedOperation>)[.. g], StringComparer.Ordinal);
                var endpoints = new Dictionary<(string Method, string Template), Stats>();
                foreach (var ((method, shape), stats) in _stats)
                {
                    var template = byMethod.TryGetValue(method, out var candidates) ? PathInventory.TemplateOf(shape, candidates) ?? shape : shape;
                    if (!endpoints.TryGetValue((method, template), out var merged))
                    {
                        endpoints[(method, template)] = merged = new Stats { FirstSeen = stats.FirstSeen, LastSeen = stats.LastSeen };
                    }
                    merged.Merge(stats, options.MaxCallers);
                }
                return new ServiceInventoryView(service, _since,
                    [.. endpoints.Select(e => e.Value.ToEndpoint(e.Key.Method, PathInventory.Named(e.Key.Template), options.MaxCallers))
                        .OrderBy(e => e.Template, StringComparer.Ordinal).ThenBy(e => e.Method, StringComparer.Ordinal)],
                    _requests, _refused, _notFound, _overCap + paths.Dropped, paths.MaxNodes, paths.Pins);
            }
        }

        public ServiceRecord Record(string service)
        {
            lock (_lock)
            {
                return new ServiceRecord(service, _since, _requests, _refused, _notFound, _overCap + paths.Dropped,
                    [.. _stats.Select(s => new EndpointRecord(s.Key.Method, s.Key.Shape, s.Value.Requests, s.Value.FirstSeen, s.Value.LastSeen,
                        [.. s.Value.Callers.Keys], s.Value.CallersCapped, [.. s.Value.StatusClasses])
                    {
                        Evidence = [.. s.Value.Callers.Values],
                        Unattributed = s.Value.Unattributed,
                    })]);
            }
        }

        public void Restore(ServiceRecord record)
        {
            lock (_lock)
            {
                _since = record.ObservingSince < _since ? record.ObservingSince : _since;
                _requests += record.Requests;
                _refused += record.Refused;
                _notFound += record.NotFound;
                _overCap += record.OverCap;
                foreach (var e in record.Endpoints)
                {
                    if (e.Requests <= 0 || !paths.Observe(e.Method, e.Shape, e.Requests))
                    {
                        continue;
                    }
                    if (!_stats.TryGetValue((e.Method, e.Shape), out var stats))
                    {
                        _stats[(e.Method, e.Shape)] = stats = new Stats { FirstSeen = e.FirstSeen, LastSeen = e.LastSeen };
                    }
                    stats.Merge(new Stats(e), int.MaxValue);
                }
            }
        }

        /// <summary>The path with identifier-shaped segments written <c>{}</c>, as the trie files it.</summary>
        private static string Shape(string path)
        {
            var shape = new System.Text.StringBuilder(path.Length);
            foreach (var range in path.AsSpan().Split('/'))
            {
                var segment = path.AsSpan()[range];
                if (!segment.IsEmpty)
                {
                    shape.Append('/').Append(SegmentShape.IsIdentifier(segment) ? SegmentShape.Parameter : segment);
                }
            }
            return shape.Length == 0 ? "/" : shape.ToString();
        }
    }

    private sealed class Stats
    {
        public long Requests;
        public DateTimeOffset FirstSeen;
        public DateTimeOffset LastSeen;
        public readonly Dictionary<string, CallerEvidence> Callers = new(StringComparer.Ordinal);
        public bool CallersCapped;

        /// <summary>Requests of callers that did not fit under the cap.</summary>
        public long Unattributed;

        /// <summary>1xx..5xx at 1..5; anything else at 0.</summary>
        public readonly long[] StatusClasses = new long[6];

        public Stats()
        {
        }

        public Stats(EndpointRecord record)
        {
            Requests = record.Requests;
            FirstSeen = record.FirstSeen;
            LastSeen = record.LastSeen;
            // A snapshot written before per-caller evidence has the callers only: their times are the endpoint's, their counts unknown (0).
            foreach (var caller in record.Callers)
            {
                Callers[caller] = new CallerEvidence(caller, 0, record.FirstSeen, record.LastSeen);
            }
            foreach (var evidence in record.Evidence ?? [])
            {
                Callers[evidence.Caller] = evidence;
            }
            CallersCapped = record.CallersCapped;
            Unattributed = record.Unattributed;
            for (var i = 0; i < StatusClasses.Length && i < record.StatusClasses.Count; i++)
            {
                StatusClasses[i] = record.StatusClasses[i];
            }
        }

        public void Add(DateTimeOffset at, string caller, int status, int maxCallers)
        {
            Requests++;
            FirstSeen = at < FirstSeen ? at : FirstSeen;
            LastSeen = at > LastSeen ? at : LastSeen;
            StatusClasses[status is >= 100 and < 600 ? status / 100 : 0]++;
            AddCaller(new CallerEvidence(caller, 1, at, at), maxCallers);
        }

        public void Merge(Stats other, int maxCallers)
        {
            Requests += other.Requests;
            FirstSeen = other.FirstSeen < FirstSeen ? other.FirstSeen : FirstSeen;
            LastSeen = other.LastSeen > LastSeen ? other.LastSeen : LastSeen;
            for (var i = 0; i < StatusClasses.Length; i++)
            {
                StatusClasses[i] += other.StatusClasses[i];
            }
            CallersCapped |= other.CallersCapped;
            Unattributed += other.Unattributed;
            foreach (var evidence in other.Callers.Values)
            {
                AddCaller(evidence, maxCallers);
            }
        }

        private void AddCaller(CallerEvidence evidence, int maxCallers)
        {
            if (Callers.TryGetValue(evidence.Caller, out var known))
            {
                Callers[evidence.Caller] = new CallerEvidence(evidence.Caller, known.Requests + evidence.Requests,
                    evidence.FirstSeen < known.FirstSeen ? evidence.FirstSeen : known.FirstSeen,
                    evidence.LastSeen > known.LastSeen ? evidence.LastSeen : known.LastSeen);
            }
            else if (Callers.Count < maxCallers)
            {
                Callers[evidence.Caller] = evidence;
            }
            else
            {
                CallersCapped = true;
                Unattributed += evidence.Requests;
            }
        }

        public InventoryEndpoint ToEndpoint(string method, string template, int maxCallers)
        {
            var evidence = Callers.Values.OrderBy(c => c.Caller, StringComparer.Ordinal).Take(maxCallers).ToList();
            return new(method, template, Requests, FirstSeen, LastSeen, [.. evidence.Select(c => c.Caller)], CallersCapped,
                Enumerable.Range(0, StatusClasses.Length).Where(i => StatusClasses[i] > 0).ToDictionary(i => i == 0 ? "other" : $"{i}xx", i => StatusClasses[i]))
            {
                Evidence = evidence,
                UnattributedRequests = Unattributed,
            };
        }
    }
}

/// <summary>One service in a snapshot of the inventory.</summary>
internal sealed record ServiceRecord(string Service, DateTimeOffset ObservingSince, long Requests, long Refused, long NotFound, long OverCap, IReadOnlyList<EndpointRecord> Endpoints);

/// <summary>One method and path shape of a service in a snapshot; <see cref="StatusClasses"/> indexed as in the inventory (0: other, 1..5: 1xx..5xx).</summary>
internal sealed record EndpointRecord(string Method, string Shape, long Requests, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, IReadOnlyList<string> Callers, bool CallersCapped, IReadOnlyList<long> StatusClasses)
{
    /// <summary>Per caller (absent in snapshots written before it existed).</summary>
    public IReadOnlyList<CallerEvidence>? Evidence { get; init; }

    /// <summary>Requests of callers beyond the cap.</summary>
    public long Unattributed { get; init; }
}
