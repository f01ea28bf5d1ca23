using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Text.Json;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Policy.Yaml;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>One stored resource and its YAML document, as sidecars receive it.</summary>
internal sealed record StoredResource(PolicyDocument Document, string Yaml)
{
    public ResourceKey Key => Document.Resource.Key;

    public string KeyText => $"{Key.Kind}/{Key.Namespace}/{Key.Name}";
}

/// <summary>What a group of workloads receives: the resources of one namespace, and of one service when <see cref="Service"/> is set.</summary>
internal readonly record struct ConfigKey(string Namespace, string? Service);

/// <summary>The whole policy set and the revocations in force at one version; immutable, replaced as a whole.</summary>
internal sealed record PolicyState(string Version, ImmutableDictionary<ResourceKey, StoredResource> Resources, RevocationList Revocations)
{
    /// <summary>The resources that apply to one workload (its namespace, selected by service or by no selector).</summary>
    public IReadOnlyList<StoredResource> For(WorkloadRef workload) => For(workload.Namespace, workload.Service);

    /// <summary>
    /// The workloads that receive the same resources as <paramref name="workload"/> share one key: the workload itself
    /// when a resource selects its service by name, otherwise its namespace alone (it gets the namespace-wide ones).
    /// So a push builds one snapshot per key, not one per workload.
    /// </summary>
    public ConfigKey KeyFor(WorkloadRef workload) =>
        SelectedServices.Contains(workload) ? new ConfigKey(workload.Namespace, workload.Service) : new ConfigKey(workload.Namespace, null);

    /// <param name="service">Null: only the namespace-wide (selector-less) resources.</param>
    public IReadOnlyList<StoredResource> For(string @namespace, string? service) =>
        [.. Resources.Values.Where(r => r.Document.Resource.AppliesTo(@namespace, service)).OrderBy(r => r.KeyText, StringComparer.Ordinal)];

    /// <summary>Every (namespace, service) some resource selects by name; computed once per state.</summary>
    private FrozenSet<WorkloadRef> SelectedServices => _selected ??= Resources.Values
        .Select(r => (r.Document.Resource.Metadata.Namespace, r.Document.Resource.Selector))
        .Where(x => x.Selector is not null)
        .Select(x => new WorkloadRef(x.Namespace, x.Selector!.Service))
        .ToFrozenSet();

    private FrozenSet<WorkloadRef>? _selected;

    /// <summary>A copy (<c>with</c>) never inherits the index of another resource set.</summary>
    private PolicyState(PolicyState original)
    {
        Version = original.Version;
        Resources = original.Resources;
        Revocations = original.Revocations;
    }
}

/// <summary>
/// The embedded policy store: <c>policies/</c> in the data directory holds one YAML file per applied resource, and
/// operators may drop their own files there too (GitOps); the directory is watched. Every change is validated as a
/// whole set — an invalid change is refused with every error and nothing is half-applied — and appended to
/// <c>policy-audit.log</c> (one JSON line per change). The version is the number of changes ever made, so it survives
/// restarts and only grows. Revocations share the version and the audit log: a revocation change is a new version
/// like a policy change, and reaches every sidecar the same way.
/// </summary>
internal sealed class PolicyStore : IDisposable
{
    private readonly string _directory;
    private readonly string _auditPath;
    private readonly TimeProvider _time;
    private readonly ILogger<PolicyStore> _logger;
    private readonly Lock _gate = new();
    private readonly RevocationFile _revocationFile;
    private readonly FileSystemWatcher? _watcher;
    private readonly Timer _debounce;
    private PolicyState _state;

    public PolicyStore(ControlPlaneOptions options, RevocationFile revocations, TimeProvider time, ILogger<PolicyStore> logger)
    {
        _revocationFile = revocations;
        _directory = Path.Combine(options.DataDir, "policies");
        _auditPath = Path.Combine(options.DataDir, "policy-audit.log");
        _time = time;
        _logger = logger;
        Directory.CreateDirectory(_directory);
        _state = new PolicyState(VersionFromAudit(), ImmutableDictionary<ResourceKey, StoredResource>.Empty, revocations.Load());
        var (loaded, errors) = ReadDirectory();
        if (errors.Count > 0)
        {
            foreach (var error in errors)
            {
                ControlPlaneLog.PolicyDirectoryInvalid(_logger, error.ToString());
            }
        }
        else
        {
            _state = _state with { Resources = loaded };
        }
        _debounce = new Timer(_ => Reload("watch"));
        _watcher = new FileSystemWatcher(_directory) { IncludeSubdirectories = false, EnableRaisingEvents = true };
        _watcher.Changed += OnDirectoryEvent;
        _watcher.Created += OnDirectoryEvent;
        _watcher.Deleted += OnDirectoryEvent;
        _watcher.Renamed += OnDirectoryEvent;
    }

    public PolicyState Current => Volatile.Read(ref _state);

    /// <summary>Raised after every change of the set, with the new state.</summary>
    public event Action<PolicyState>? Changed;

    /// <summary>Validates <paramref name="yaml"/> together with the rest of the set and stores it; throws with every error otherwise.</summary>
    public (PolicyState State, IReadOnlyList<string> Outcomes) Apply(string source, string yaml, string actor)
    {
        var read = PolicyYaml.Read(source, yaml);
        if (read.Errors.Length > 0)
        {
            // Structure errors, plus whatever else validation finds in the same documents: every error at once.
            throw new PolicyValidationException([.. read.Errors, .. PolicyValidator.Validate(read.Documents)]);
        }
        var incoming = read.Documents.Select(document => new StoredResource(document, document.Text!)).ToList();
        lock (_gate)
        {
            var current = Current;
            var errors = PolicyValidator.Validate(read.Documents); // duplicates within this apply
            var next = current.Resources.SetItems(incoming.Select(r => KeyValuePair.Create(r.Key, r)));
            errors = errors.Length > 0 ? errors : ValidateSet(next.Values);
            if (errors.Length > 0)
            {
                throw new PolicyValidationException(errors);
            }
            var outcomes = new List<string>();
            var changed = false;
            foreach (var resource in incoming)
            {
                var outcome = !current.Resources.TryGetValue(resource.Key, out var old) ? "created"
                    : old.Yaml == resource.Yaml ? "unchanged" : "configured";
                outcomes.Add($"{resource.KeyText} {outcome}");
                if (outcome != "unchanged")
                {
                    changed = true;
                    Pem.WritePublic(FileFor(resource.Key), resource.Yaml);
                }
            }
            return changed ? (Commit(next, "apply", actor, incoming.Select(r => r.KeyText)), outcomes) : (current, outcomes);
        }
    }

    /// <summary>Removes one resource; false if there is none with that key.</summary>
    public bool Delete(ResourceKey key, string actor, out PolicyState state)
    {
        lock (_gate)
        {
            state = Current;
            if (!state.Resources.TryGetValue(key, out var resource))
            {
                return false;
            }
            var path = FileFor(key);
            if (File.Exists(path))
            {
                File.Delete(path);
            }
            else
            {
                // The resource came from an operator's own file: it must be removed there.
                throw new InvalidOperationException($"{resource.KeyText} comes from '{resource.Document.Source}' in {_directory}; remove it from that file");
            }
            state = Commit(state.Resources.Remove(key), "delete", actor, [resource.KeyText]);
            return true;
        }
    }

    /// <summary>
    /// Replaces the revocation list as a new version (written to <c>revocations.json</c> first, then audited); nothing
    /// changes when <paramref name="change"/> returns the same list.
    /// </summary>
    public PolicyState ReviseRevocations(Func<RevocationList, (RevocationList Next, IReadOnlyList<string> Subjects)> change, string action, string actor, string? reason)
    {
        lock (_gate)
        {
            var current = Current;
            var (next, subjects) = change(current.Revocations);
            if (ReferenceEquals(next, current.Revocations))
            {
                return current;
            }
            _revocationFile.Save(next);
            return Commit(current.Resources, action, actor, subjects, next, reason);
        }
    }

    private PolicyState Commit(ImmutableDictionary<ResourceKey, StoredResource> resources, string action, string actor, IEnumerable<string> keys, RevocationList? revocations = null, string? reason = null)
    {
        var version = "v" + (ParseVersion(Current.Version) + 1);
        var entry = JsonSerializer.Serialize(new AuditEntry(_time.GetUtcNow(), version, action, actor, [.. keys], string.IsNullOrEmpty(reason) ? null : reason), PolicyJson.Default.AuditEntry);
        File.AppendAllText(_auditPath, entry + "\n");
        var state = new PolicyState(version, resources, revocations ?? Current.Revocations);
        Volatile.Write(ref _state, state);
        ControlPlaneLog.PolicyChanged(_logger, version, action, actor, string.Join(", ", keys));
        Changed?.Invoke(state);
        return state;
    }

    private void OnDirectoryEvent(object sender, FileSystemEventArgs e) => _debounce.Change(TimeSpan.FromMilliseconds(200), Timeout.InfiniteTimeSpan);

    /// <summary>Re-reads the directory (an operator edited it); keeps the last good set if the new one is invalid.</summary>
    private void Reload(string actor)
    {
        lock (_gate)
        {
            var (loaded, errors) = ReadDirectory();
            if (errors.Count > 0)
            {
                foreach (var error in errors)
                {
                    ControlPlaneLog.PolicyDirectoryInvalid(_logger, error.ToString());
                }
                return;
            }
            var current = Current;
            var same = loaded.Count == current.Resources.Count
                && loaded.All(r => current.Resources.TryGetValue(r.Key, out var old) && old.Yaml == r.Value.Yaml);
            if (!same)
            {
                var keys = loaded.Keys.Union(current.Resources.Keys)
                    .Where(k => !loaded.TryGetValue(k, out var n) || !current.Resources.TryGetValue(k, out var o) || n.Yaml != o.Yaml)
                    .Select(k => $"{k.Kind}/{k.Namespace}/{k.Name}");
                Commit(loaded, "directory", actor, keys);
            }
        }
    }

    private (ImmutableDictionary<ResourceKey, StoredResource> Resources, IReadOnlyList<PolicyError> Errors) ReadDirectory()
    {
        var resources = new List<StoredResource>();
        var errors = new List<PolicyError>();
        foreach (var file in Directory.EnumerateFiles(_directory).Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (IOException)
            {
                continue; // being written; the watcher fires again when it is done
            }
            var read = PolicyYaml.Read(Path.GetFileName(file), text);
            errors.AddRange(read.Errors);
            if (read.Errors.Length == 0)
            {
                resources.AddRange(read.Documents.Select(document => new StoredResource(document, document.Text!)));
            }
        }
        errors.AddRange(ValidateSet(resources));
        var byKey = resources.GroupBy(r => r.Key).ToImmutableDictionary(g => g.Key, g => g.Last());
        return (byKey, errors);
    }

    private static ImmutableArray<PolicyError> ValidateSet(IEnumerable<StoredResource> resources) =>
        PolicyValidator.Validate(resources.Select(r => r.Document));

    private string FileFor(ResourceKey key) =>
        Path.Combine(_directory, $"{key.Kind.ToLowerInvariant()}.{key.Namespace}.{key.Name}.yaml");

    private string VersionFromAudit() =>
        "v" + (File.Exists(_auditPath) ? File.ReadLines(_auditPath).LongCount() : 0);

    private static long ParseVersion(string version) => long.Parse(version.AsSpan(1), System.Globalization.CultureInfo.InvariantCulture);

    public void Dispose()
    {
        _watcher?.Dispose();
        _debounce.Dispose();
    }
}

internal sealed record AuditEntry(DateTimeOffset Time, string Version, string Action, string Actor, IReadOnlyList<string> Resources, string? Reason = null);

[System.Text.Json.Serialization.JsonSerializable(typeof(AuditEntry))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class PolicyJson : System.Text.Json.Serialization.JsonSerializerContext;
