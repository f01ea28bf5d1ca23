using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.ControlPlane.Config;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Authorization;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.ControlPlane.Policy;

/// <summary>
/// The policy source standalone: <c>policies/</c> in the data directory holds one YAML file per applied resource, and
/// operators may drop their own files there too (GitOps); the directory is watched once started.
/// 1. Every change — an apply, a delete, an edit of the directory — is validated as a whole set: an invalid change is
///    refused with every error, each naming its file, and nothing is half-applied.
/// 2. A directory that does not read as a valid set (a malformed file, a duplicate) changes nothing: the errors are
///    logged with their files and the last good set stays, across restarts too (it is kept in
///    <c>policies-last-good.json</c>), so a bad file never takes the policy away from the mesh.
/// 3. No exception escapes a directory read, timer callback included.
/// </summary>
internal sealed class DirectoryPolicySource : IPolicySource, IHostedService, IDisposable
{
    /// <summary>A burst of file events becomes one re-read this long after the last of them.</summary>
    public static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(200);

    private readonly string _directory;
    private readonly string _lastGoodPath;
    private readonly TimeProvider _time;
    private readonly ILogger<DirectoryPolicySource> _logger;
    private readonly Lock _gate = new();
    private ImmutableDictionary<ResourceKey, StoredResource> _resources;
    private FileSystemWatcher? _watcher;
    private ITimer? _debounce;

    public DirectoryPolicySource(ControlPlaneOptions options, TimeProvider time, ILogger<DirectoryPolicySource> logger)
    {
        _directory = Path.Combine(options.DataDir, "policies");
        _lastGoodPath = Path.Combine(options.DataDir, "policies-last-good.json");
        _time = time;
        _logger = logger;
        Directory.CreateDirectory(_directory);
        var (loaded, errors) = ReadDirectory();
        if (errors.Count == 0)
        {
            _resources = loaded;
            SaveLastGood(loaded);
        }
        else
        {
            LogInvalid(errors);
            _resources = LoadLastGood();
            ControlPlaneLog.PolicyDirectoryInvalidAtStart(_logger, _resources.Count, _lastGoodPath);
        }
    }

    public string Location => _directory;

    public ImmutableDictionary<ResourceKey, StoredResource> Resources => Volatile.Read(ref _resources);

    public event Action<PolicyChange>? Changed;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _debounce = _time.CreateTimer(_ => Reload(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        // Subdirectories too: an ApiSpec's OpenAPI file (openapi/…) is read again when it is edited.
        _watcher = new FileSystemWatcher(_directory) { IncludeSubdirectories = true };
        _watcher.Changed += OnDirectoryEvent;
        _watcher.Created += OnDirectoryEvent;
        _watcher.Deleted += OnDirectoryEvent;
        _watcher.Renamed += OnDirectoryEvent;
        _watcher.EnableRaisingEvents = true;
        // Whatever changed between the first read and the watch.
        _debounce.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public PolicyApplyResult Apply(string source, string yaml, string actor)
    {
        var read = PolicyFileReader.Read(source, yaml, ReadDocumentFile);
        if (read.Errors.Count > 0)
        {
            // Structure errors, plus whatever else validation finds in the same documents: every error at once.
            throw new PolicyValidationException([.. read.Errors, .. PolicyValidator.Validate(read.Documents)]);
        }
        if (read.Resources.Count == 0)
        {
            throw new PolicyValidationException([new PolicyError(source, "no resources in it (empty, or only comments): nothing applied")]);
        }
        lock (_gate)
        {
            var current = Resources;
            var errors = PolicyValidator.Validate(read.Documents); // duplicates within this apply
            var next = current.SetItems(read.Resources.Select(r => KeyValuePair.Create(r.Key, r)));
            errors = errors.Length > 0 ? errors : ValidateSet(next.Values);
            if (errors.Length > 0)
            {
                throw new PolicyValidationException(errors);
            }
            var outcomes = new List<string>();
            foreach (var resource in read.Resources)
            {
                var outcome = !current.TryGetValue(resource.Key, out var old) ? "created"
                    : old.SameAs(resource) ? "unchanged" : "configured";
                outcomes.Add($"{resource.KeyText} {outcome}");
                if (outcome != "unchanged")
                {
                    AtomicFile.WriteReadable(FileFor(resource.Key), resource.Yaml);
                }
            }
            var changed = outcomes.Any(o => !o.EndsWith(" unchanged", StringComparison.Ordinal));
            if (changed)
            {
                Commit(next, "apply", actor, [.. read.Resources.Select(r => r.KeyText)]);
            }
            var warnings = read.Resources.Select(r => r.Document.Resource).OfType<AuthorizationPolicy>().SelectMany(ConnectionRules.Warnings).ToList();
            return new PolicyApplyResult(outcomes, changed, warnings);
        }
    }

    public bool Delete(ResourceKey key, string actor)
    {
        lock (_gate)
        {
            if (!Resources.TryGetValue(key, out var resource))
            {
                return false;
            }
            var path = FileFor(key);
            if (!File.Exists(path))
            {
                // The resource came from an operator's own file: it must be removed there.
                throw new PolicySourceException($"{resource.KeyText} comes from '{resource.Document.Source}' in {_directory}; remove it from that file");
            }
            File.Delete(path);
            Commit(Resources.Remove(key), "delete", actor, [resource.KeyText]);
            return true;
        }
    }

    private void Commit(ImmutableDictionary<ResourceKey, StoredResource> resources, string action, string actor, IReadOnlyList<string> keys)
    {
        Volatile.Write(ref _resources, resources);
        SaveLastGood(resources);
        Changed?.Invoke(new PolicyChange(resources, action, actor, keys));
    }

    private void OnDirectoryEvent(object sender, FileSystemEventArgs e) => _debounce?.Change(Debounce, Timeout.InfiniteTimeSpan);

    /// <summary>Re-reads the directory (an operator edited it); keeps the last good set if the new one is invalid. Never throws.</summary>
    private void Reload()
    {
        try
        {
            lock (_gate)
            {
                var (loaded, errors) = ReadDirectory();
                if (errors.Count > 0)
                {
                    LogInvalid(errors);
                    return;
                }
                var current = Resources;
                var keys = loaded.Keys.Union(current.Keys)
                    .Where(k => !loaded.TryGetValue(k, out var n) || !current.TryGetValue(k, out var o) || !n.SameAs(o))
                    .Select(k => $"{k.Kind}/{k.Namespace}/{k.Name}")
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (keys.Count > 0)
                {
                    Commit(loaded, "directory", "watch", keys);
                }
            }
        }
        catch (Exception e)
        {
            ControlPlaneLog.PolicyDirectoryInvalid(_logger, $"{_directory} could not be read: {e.Message}");
        }
    }

    private (ImmutableDictionary<ResourceKey, StoredResource> Resources, IReadOnlyList<PolicyError> Errors) ReadDirectory()
    {
        var resources = new List<StoredResource>();
        var errors = new List<PolicyError>();
        foreach (var file in Directory.EnumerateFiles(_directory).Where(IsPolicyFile).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(file);
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (FileNotFoundException)
            {
                continue; // removed since it was listed; the watcher fires again
            }
            catch (IOException)
            {
                continue; // being written; the watcher fires again when it is done
            }
            catch (UnauthorizedAccessException e)
            {
                errors.Add(new PolicyError(name, $"cannot be read: {e.Message}"));
                continue;
            }
            var read = PolicyFileReader.Read(name, text, ReadDocumentFile);
            errors.AddRange(read.Errors);
            resources.AddRange(read.Resources);
        }
        errors.AddRange(ValidateSet(resources));
        var byKey = resources.GroupBy(r => r.Key).ToImmutableDictionary(g => g.Key, g => g.Last());
        return (byKey, errors);
    }

    /// <summary>
    /// A file a policy names (an ApiSpec's OpenAPI document), relative to the directory and inside it: a subdirectory
    /// such as <c>openapi/</c> keeps it apart from the policy files, which are every <c>*.yaml</c> at the top. The watch
    /// covers it: an edit re-reads the directory, and the resource counts as changed (<see cref="StoredResource.Referenced"/>).
    /// </summary>
    private string ReadDocumentFile(string name)
    {
        var root = Path.GetFullPath(_directory) + Path.DirectorySeparatorChar;
        var path = Path.GetFullPath(Path.Combine(root, name));
        return path.StartsWith(root, StringComparison.Ordinal)
            ? File.ReadAllText(path)
            : throw new ArgumentException($"it is outside the policy directory {_directory}");
    }

    private static bool IsPolicyFile(string path) =>
        path.EndsWith(".yaml", StringComparison.Ordinal) || path.EndsWith(".yml", StringComparison.Ordinal);

    private void LogInvalid(IReadOnlyList<PolicyError> errors)
    {
        foreach (var error in errors)
        {
            ControlPlaneLog.PolicyDirectoryInvalid(_logger, error.ToString());
        }
    }

    private static ImmutableArray<PolicyError> ValidateSet(IEnumerable<StoredResource> resources) =>
        PolicyValidator.Validate(resources.Select(r => r.Document));

    private string FileFor(ResourceKey key) =>
        Path.Combine(_directory, $"{key.Kind.ToLowerInvariant()}.{key.Namespace}.{key.Name}.yaml");

    /// <summary>The set last in force, each resource with the file it came from.</summary>
    private void SaveLastGood(ImmutableDictionary<ResourceKey, StoredResource> resources) =>
        AtomicFile.WriteOwnerOnly(_lastGoodPath, JsonSerializer.Serialize(
            [.. resources.Values.OrderBy(r => r.KeyText, StringComparer.Ordinal).Select(r => new LastGoodResource(r.Document.Source, r.Yaml))],
            LastGoodJson.Default.ListLastGoodResource));

    private ImmutableDictionary<ResourceKey, StoredResource> LoadLastGood()
    {
        try
        {
            if (!File.Exists(_lastGoodPath))
            {
                return ImmutableDictionary<ResourceKey, StoredResource>.Empty;
            }
            var saved = JsonSerializer.Deserialize(File.ReadAllText(_lastGoodPath), LastGoodJson.Default.ListLastGoodResource) ?? [];
            var reads = saved.Select(s => PolicyFileReader.Read(s.Source, s.Yaml, ReadDocumentFile)).ToList();
            var errors = reads.SelectMany(r => r.Errors).Concat(ValidateSet(reads.SelectMany(r => r.Resources))).ToList();
            if (errors.Count > 0)
            {
                throw new InvalidDataException(string.Join("; ", errors));
            }
            return reads.SelectMany(r => r.Resources).ToImmutableDictionary(r => r.Key);
        }
        catch (Exception e) when (e is IOException or JsonException or InvalidDataException or UnauthorizedAccessException)
        {
            ControlPlaneLog.PolicyDirectoryInvalid(_logger, $"{_lastGoodPath} cannot be used either: {e.Message}");
            return ImmutableDictionary<ResourceKey, StoredResource>.Empty;
        }
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _debounce?.Dispose();
    }
}

internal sealed record LastGoodResource(string Source, string Yaml);

[JsonSerializable(typeof(List<LastGoodResource>))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class LastGoodJson : JsonSerializerContext;
