using System.Collections.Immutable;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ZeroTrustMesh.ControlPlane.Ca;
using ZeroTrustMesh.ControlPlane.Policy;
using ZeroTrustMesh.Identity;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.ControlPlane.Config;

/// <summary>
/// The versioned config every sidecar receives its part of: the policy resources (<see cref="IPolicySource"/>) and
/// the revocations (<see cref="IRevocationStore"/>), composed into one <see cref="ConfigState"/> per change.
/// 1. The version ("v12") is a counter owned here, on the distribution side, whatever the sources are: it is kept in
///    <c>config-version.json</c> with a digest of the content it names, so a restart with the same content keeps the
///    version (sidecars and <c>ztmctl status</c> compare versions) and a restart with other content (the directory
///    edited while the control plane was stopped, another CA) moves on to the next.
/// 2. Every change is appended to <c>policy-audit.log</c> (<see cref="AuditLog"/>) with its version, then published.
/// 3. <see cref="Changed"/> is raised after each swap, in version order.
/// A CA rotation changes the trust bundle (<see cref="PublishBundle"/>): a new version like any other change.
/// 4. With several replicas (<see cref="SharedConfigVersions"/>) the number comes from the cluster instead, by content
///    digest, so that every replica gives the same content the same version.
/// </summary>
internal sealed class ConfigStore
{
    private readonly AuditLog _audit;
    private readonly string _versionPath;
    private readonly TimeProvider _time;
    private readonly ILogger<ConfigStore> _logger;
    private readonly SharedConfigVersions? _shared;
    private readonly Lock _gate = new();
    private ConfigState _state;
    private long _version;

    public ConfigStore(
        IPolicySource policies, IRevocationStore revocations, CertificateAuthority ca, ControlPlaneOptions options, TimeProvider time, ILogger<ConfigStore> logger,
        SharedConfigVersions? shared = null)
    {
        _shared = shared;
        _audit = new AuditLog(options.DataDir);
        _versionPath = Path.Combine(options.DataDir, "config-version.json");
        _time = time;
        _logger = logger;
        lock (_gate)
        {
            // Subscribed before the first read: a change in between waits on the lock instead of being lost.
            policies.Changed += change => Publish(change.Resources, null, null, null, change.Action, change.Actor, change.Keys, null);
            revocations.Changed += change => Publish(null, change.List, null, null, change.Action, change.Actor, change.Subjects, change.Reason);
            _state = new ConfigState("", policies.Resources, revocations.Current, ca.Bundle);
            var digest = Digest(_state);
            var stored = LoadVersion();
            if (stored is null)
            {
                // A data directory from before the counter: its version was the number of audited changes.
                _version = _audit.Count();
            }
            else if (stored.Digest == digest)
            {
                _version = stored.Version;
            }
            else
            {
                _version = stored.Version + 1;
                _audit.Append(new AuditEntry(time.GetUtcNow(), Format(_version), "start", "controlplane", [], "the config changed while the control plane was stopped"));
            }
            if (_shared is not null)
            {
                _version = SharedVersion(digest, _version);
            }
            _state = _state with { Version = Format(_version) };
            SaveVersion(digest);
        }
    }

    /// <summary>The config in force now.</summary>
    public ConfigState Current => Volatile.Read(ref _state);

    /// <summary>Raised after every change with the new state, in version order; handlers must be quick (they run under the store's lock).</summary>
    public event Action<ConfigState>? Changed;

    /// <summary>A CA rotation step changed the roots of the trust bundle: a new version carries it to every sidecar.</summary>
    public ConfigState PublishBundle(TrustBundle bundle, string action, string reason)
    {
        lock (_gate)
        {
            if (Current.Bundle.SameRootsAs(bundle) && Current.Bundle.Sequence == bundle.Sequence)
            {
                return Current;
            }
            Publish(null, null, bundle, null, action, "controlplane", [$"trust bundle {bundle.Sequence}"], reason);
            return Current;
        }
    }

    /// <summary>
    /// Anomaly response restricts these callers now (all of them, replacing the previous set): a new version, pushed at
    /// once to the sidecars of every workload whose restrictions changed. Nothing happens when the set is the same.
    /// </summary>
    public ConfigState PublishRestrictions(ImmutableArray<CallerRestriction> restrictions, string actor, IReadOnlyList<string> keys, string reason)
    {
        lock (_gate)
        {
            if (Current.Restrictions.SequenceEqual(restrictions))
            {
                return Current;
            }
            Publish(null, null, null, restrictions, "anomaly", actor, keys, reason);
            return Current;
        }
    }

    private void Publish(
        ImmutableDictionary<ResourceKey, StoredResource>? resources, RevocationList? revocations, TrustBundle? bundle, ImmutableArray<CallerRestriction>? restrictions,
        string action, string actor, IReadOnlyList<string> keys, string? reason)
    {
        lock (_gate)
        {
            var current = Current;
            var next = new ConfigState("", resources ?? current.Resources, revocations ?? current.Revocations, bundle ?? current.Bundle)
            {
                Restrictions = restrictions ?? current.Restrictions,
            };
            var digest = Digest(next);
            _version = _shared is null ? _version + 1 : SharedVersion(digest, _version + 1);
            next = next with { Version = Format(_version) };
            _audit.Append(new AuditEntry(_time.GetUtcNow(), next.Version, action, actor, keys, string.IsNullOrEmpty(reason) ? null : reason));
            SaveVersion(digest);
            Volatile.Write(ref _state, next);
            ControlPlaneLog.ConfigChanged(_logger, next.Version, action, actor, string.Join(", ", keys));
            Changed?.Invoke(next);
        }
    }

    /// <summary>The version the replicas agreed on for this content; when the cluster cannot be asked, this replica's own count.</summary>
    private long SharedVersion(string digest, long local)
    {
        try
        {
            return _shared!.VersionOf(digest, local);
        }
        catch (IOException e)
        {
            Coordination.CoordinationLog.ConfigVersionNotShared(_logger, SharedConfigVersions.Name, e.Message, Format(local));
            return local;
        }
    }

    private static string Format(long version) => "v" + version.ToString(CultureInfo.InvariantCulture);

    /// <summary>A digest of everything a snapshot carries but its version: resources, revocations, trust bundle.</summary>
    private static string Digest(ConfigState state)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var resource in state.Resources.Values.OrderBy(r => r.KeyText, StringComparer.Ordinal))
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{resource.KeyText}\n{resource.Yaml}\0"));
            if (resource.Referenced is { } referenced)
            {
                hash.AppendData(Encoding.UTF8.GetBytes($"{referenced}\0"));
            }
        }
        foreach (var entry in state.Revocations.Entries)
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{entry.Subject}|{entry.RevokedAt:O}|{entry.ExpiresAt:O}|{entry.Reason}\0"));
        }
        hash.AppendData(SHA256.HashData(state.Bundle.Roots.SelectMany(r => r.RawData).ToArray()));
        foreach (var r in state.Restrictions)
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{r.Workload}|{r.Caller}|{r.Subject}|{r.Route}|{r.Action}|{r.RequestsPerMinute}|{r.Reason}\0"));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private VersionRecord? LoadVersion()
    {
        if (!File.Exists(_versionPath))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(_versionPath), ConfigVersionJson.Default.VersionRecord)
                ?? throw new InvalidDataException($"{_versionPath} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{_versionPath} is not a config version record: {e.Message}", e);
        }
    }

    private void SaveVersion(string digest) =>
        AtomicFile.WriteOwnerOnly(_versionPath, JsonSerializer.Serialize(new VersionRecord(_version, digest), ConfigVersionJson.Default.VersionRecord));

    internal sealed record VersionRecord(long Version, string Digest);
}

[JsonSerializable(typeof(ConfigStore.VersionRecord))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class ConfigVersionJson : JsonSerializerContext;
