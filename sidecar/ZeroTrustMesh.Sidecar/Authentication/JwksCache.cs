using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.Tokens;
using ZeroTrustMesh.Sidecar.Tls;

namespace ZeroTrustMesh.Sidecar.Authentication;

/// <summary>Timings of remote JWKS: refreshed every <see cref="RefreshInterval"/>, re-fetched on an unknown <c>kid</c> at
/// most every <see cref="MinRefetchInterval"/>, a failed first fetch retried after <see cref="RetryInterval"/>.</summary>
internal sealed class JwksOptions
{
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(20);

    public TimeSpan MinRefetchInterval { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan FetchTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A JWKS larger than this is refused: it comes from the network.</summary>
    public int MaxBytes { get; init; } = 1024 * 1024;

    /// <summary>The roots a JWKS server's certificate must chain to (null: the default store); read at the first fetch.</summary>
    public Func<X509ChainPolicy?> HttpsTrust { get; init; } =
        () => SystemTrustStore.PublicEndpointPolicy(SystemTrustStore.Original, SystemTrustStore.BundleFiles);
}

/// <summary>A set of verification keys as fetched at one time; immutable.</summary>
internal sealed class JwksKeys(IReadOnlyList<SecurityKey> keys, DateTimeOffset fetched)
{
    public IReadOnlyList<SecurityKey> Keys => keys;

    public DateTimeOffset Fetched => fetched;

    /// <summary>Parses a JSON Web Key Set; returns null and the reason when it is not usable.</summary>
    public static JwksKeys? Parse(string json, DateTimeOffset now, out string? error)
    {
        try
        {
            var keys = new JsonWebKeySet(json).GetSigningKeys();
            error = keys.Count == 0 ? "the JWKS has no usable signing key" : null;
            return keys.Count == 0 ? null : new JwksKeys([.. keys], now);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException or System.Text.Json.JsonException)
        {
            error = $"the JWKS is not valid: {e.Message}";
            return null;
        }
    }
}

/// <summary>
/// The remote JWKS every snapshot refers to, one per URI, shared across snapshots so a policy push does not refetch
/// keys. Sources no snapshot uses any more are dropped on the next apply.
/// </summary>
internal sealed class JwksCache(JwksOptions options, TimeProvider time, ILogger<JwksCache> logger) : IDisposable
{
    private readonly ConcurrentDictionary<string, JwksSource> _sources = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    // Created at the first fetch of each scheme: a sidecar whose policies name no JWKS over HTTPS never reads a CA bundle.
    private readonly Lazy<HttpClient> _http = new(() => Client(options, trust: null));
    private readonly Lazy<HttpClient> _https = new(() => Client(options, options.HttpsTrust()));

    private static HttpClient Client(JwksOptions options, X509ChainPolicy? trust) => new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        ConnectTimeout = options.FetchTimeout,
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        SslOptions = new SslClientAuthenticationOptions { CertificateChainPolicy = trust },
    })
    {
        Timeout = options.FetchTimeout,
        MaxResponseContentBufferSize = options.MaxBytes,
    };

    /// <summary>The source for <paramref name="uri"/>; a new one starts fetching at once, in the background.</summary>
    public JwksSource Get(Uri uri)
    {
        var source = _sources.GetOrAdd(uri.AbsoluteUri, _ => new JwksSource(uri, uri.Scheme == Uri.UriSchemeHttps ? _https : _http, options, time, logger, _stopping.Token));
        source.Prefetch();
        return source;
    }

    /// <summary>Forgets every source whose URI is not in <paramref name="inUse"/>.</summary>
    public void Retain(IReadOnlySet<string> inUse)
    {
        foreach (var uri in _sources.Keys)
        {
            if (!inUse.Contains(uri))
            {
                _sources.TryRemove(uri, out _);
            }
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
        foreach (var client in (ReadOnlySpan<Lazy<HttpClient>>)[_http, _https])
        {
            if (client.IsValueCreated)
            {
                client.Value.Dispose();
            }
        }
    }
}

/// <summary>
/// One remote JWKS: the last good keys, refreshed in the background once they are older than the refresh interval
/// (requests keep using them meanwhile), and re-fetched when a token names a key id they lack. A failed fetch keeps
/// the last good keys; with none, tokens of the issuer are refused with the fetch error.
/// </summary>
internal sealed class JwksSource
{
    private readonly Uri _uri;
    private readonly Lazy<HttpClient> _http;
    private readonly JwksOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private readonly Lock _gate = new();
    private JwksKeys? _keys;
    private string _error = "the JWKS has not been fetched yet";
    private long _lastAttemptTicks;
    private Task? _fetching;

    public JwksSource(Uri uri, Lazy<HttpClient> http, JwksOptions options, TimeProvider time, ILogger logger, CancellationToken stopping)
    {
        _uri = uri;
        _http = http;
        _options = options;
        _time = time;
        _logger = logger;
        _stopping = stopping;
    }

    public Uri Uri => _uri;

    private DateTimeOffset LastAttempt => new(Interlocked.Read(ref _lastAttemptTicks), TimeSpan.Zero);

    /// <summary>The current keys, or null and the reason there are none.</summary>
    public async ValueTask<(JwksKeys? Keys, string? Error)> GetAsync(CancellationToken cancellation)
    {
        var keys = Volatile.Read(ref _keys);
        var now = _time.GetUtcNow();
        if (keys is not null)
        {
            if (now - keys.Fetched >= _options.RefreshInterval)
            {
                _ = Fetch(); // stale: refresh in the background, this request uses what we have
            }
            return (keys, null);
        }
        if (now - LastAttempt < _options.RetryInterval && _fetching is null)
        {
            return (null, _error); // failed a moment ago: do not hammer the issuer on every request
        }
        await Fetch().WaitAsync(cancellation);
        keys = Volatile.Read(ref _keys);
        return keys is null ? (null, _error) : (keys, null);
    }

    /// <summary>A token named a key id we do not have: the issuer may have rotated. Re-fetch, but not more often than the minimum interval.</summary>
    public async ValueTask<JwksKeys?> RefetchForUnknownKeyAsync(CancellationToken cancellation)
    {
        if (_time.GetUtcNow() - LastAttempt >= _options.MinRefetchInterval)
        {
            await Fetch().WaitAsync(cancellation);
        }
        return Volatile.Read(ref _keys);
    }

    public void Prefetch()
    {
        if (Volatile.Read(ref _keys) is null && Interlocked.Read(ref _lastAttemptTicks) == 0)
        {
            _ = Fetch();
        }
    }

    /// <summary>One fetch at a time: concurrent callers share it.</summary>
    private Task Fetch()
    {
        lock (_gate)
        {
            return _fetching ??= FetchAsync();
        }
    }

    private async Task FetchAsync()
    {
        await Task.Yield();
        Interlocked.Exchange(ref _lastAttemptTicks, _time.GetUtcNow().UtcTicks);
        string? error;
        try
        {
            error = await FetchOnceAsync();
        }
        catch (Exception e) when (e is TaskCanceledException && !_stopping.IsCancellationRequested)
        {
            error = $"no answer within {_options.FetchTimeout.TotalSeconds:0.#}s";
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException or InvalidOperationException)
        {
            // HttpClient's message for a failed handshake says "see inner exception": a log line cannot, so say it.
            error = _stopping.IsCancellationRequested ? "the sidecar is stopping"
                : e.InnerException is System.Security.Authentication.AuthenticationException tls ? $"TLS: {tls.Message}"
                : e.Message;
        }
        if (error is not null)
        {
            _error = $"JWKS {_uri.AbsoluteUri} could not be fetched: {error}";
            var kept = Volatile.Read(ref _keys);
            SidecarLog.JwksFetchFailed(_logger, _uri.AbsoluteUri, error,
                kept is null ? "tokens of its issuers are refused until it can be fetched" : $"keeping the {kept.Keys.Count} key(s) fetched at {kept.Fetched:O}");
        }
        lock (_gate)
        {
            _fetching = null;
        }
    }

    /// <summary>Returns the error, or null once new keys are in place.</summary>
    private async Task<string?> FetchOnceAsync()
    {
        using var response = await _http.Value.GetAsync(_uri, HttpCompletionOption.ResponseContentRead, _stopping);
        if (!response.IsSuccessStatusCode)
        {
            return $"HTTP {(int)response.StatusCode}";
        }
        var parsed = JwksKeys.Parse(await response.Content.ReadAsStringAsync(_stopping), _time.GetUtcNow(), out var error);
        if (parsed is null)
        {
            return error;
        }
        Volatile.Write(ref _keys, parsed);
        SidecarLog.JwksFetched(_logger, _uri.AbsoluteUri, parsed.Keys.Count);
        return null;
    }
}
