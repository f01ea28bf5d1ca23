using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Sidecar.Identity;

/// <summary>
/// Obtains the sidecar's SVID and keeps it fresh:
/// 1. generate an ECDSA P-256 key in memory and a CSR for it;
/// 2. first time: sign with the join token; a refusal is final (exit), an outage is retried with backoff;
/// 3. verify what came back (chains to the bundle, SVID rules, our key, the identity we expect) and swap it in;
/// 4. wait until half the lifetime (with jitter), then renew over mTLS with the current certificate and a new key;
///    on failure keep the current certificate and retry with backoff and jitter until it expires (then fail closed).
/// </summary>
internal sealed class CertificateRotator(
    IIdentityIssuer issuer,
    IdentityState state,
    SidecarOptions options,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILogger<CertificateRotator> logger) : BackgroundService
{
    private readonly Random _jitter = Random.Shared;

    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes once the first certificate is held; fails if the join token was refused.</summary>
    public Task FirstIdentity => _first.Task;

    /// <summary>Raised with the time of the next renewal or retry, before waiting for it (tests drive a fake clock from it).</summary>
    public event Action<DateTimeOffset>? RenewalScheduled;

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        try
        {
            await BootstrapAsync(stopping);
            while (!stopping.IsCancellationRequested)
            {
                await RenewWhenDueAsync(stopping);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private async Task BootstrapAsync(CancellationToken stopping)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var identity = await ObtainAsync(expected: null, (csr, ct) => issuer.SignAsync(csr, options.Proof, ct), stopping);
                SidecarLog.SvidIssued(logger, identity.Id.Value, identity.Serial, identity.NotAfter, "issued");
                _first.TrySetResult();
                return;
            }
            catch (IdentityRefusedException e)
            {
                // The same proof will be refused again: exit so the failure is visible (a crash loop in Kubernetes).
                // Stop first: whoever waits on FirstIdentity must find the sidecar already stopping.
                SidecarLog.BootstrapRefused(logger, options.Proof.ToString(), e.Message);
                lifetime.StopApplication();
                _first.TrySetException(e);
                await Task.Delay(Timeout.Infinite, stopping);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stopping.IsCancellationRequested)
            {
                var delay = RotationSchedule.RetryDelay(attempt, time.GetUtcNow(), DateTimeOffset.MaxValue, _jitter.NextDouble());
                SidecarLog.IssuanceFailed(logger, "sign", attempt, delay.TotalSeconds, Describe(e));
                await WaitUntilAsync(time.GetUtcNow() + delay, stopping);
            }
        }
    }

    private async Task RenewWhenDueAsync(CancellationToken stopping)
    {
        var current = state.Current!;
        await WaitUntilAsync(RotationSchedule.RenewAt(current.NotBefore, current.NotAfter, _jitter.NextDouble()), stopping);

        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var renewed = await ObtainAsync(current.Id, (csr, ct) => issuer.RenewAsync(csr, current, ct), stopping);
                SidecarLog.SvidIssued(logger, renewed.Id.Value, renewed.Serial, renewed.NotAfter, "renewed");
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException || !stopping.IsCancellationRequested)
            {
                var now = time.GetUtcNow();
                if (!current.IsValidAt(now))
                {
                    SidecarLog.SvidExpired(logger, current.Id.Value, current.Serial, current.NotAfter);
                }
                var delay = RotationSchedule.RetryDelay(attempt, now, current.NotAfter, _jitter.NextDouble());
                SidecarLog.IssuanceFailed(logger, "renew", attempt, delay.TotalSeconds, Describe(e));
                await WaitUntilAsync(now + delay, stopping);
            }
        }
    }

    /// <summary>
    /// Waits on the clock until <paramref name="at"/>. The timer exists before <see cref="RenewalScheduled"/> is raised,
    /// so whoever moves a fake clock on that signal cannot move it past a timer not yet set.
    /// </summary>
    private async Task WaitUntilAsync(DateTimeOffset at, CancellationToken stopping)
    {
        var wait = at - time.GetUtcNow();
        var delay = wait > TimeSpan.Zero ? Task.Delay(wait, time, stopping) : Task.CompletedTask;
        RenewalScheduled?.Invoke(at);
        await delay;
    }

    /// <summary>Steps 1 and 3: a new key and CSR, the call, and verification of the result before it is used.</summary>
    private async Task<WorkloadIdentity> ObtainAsync(SpiffeId? expected, Func<byte[], CancellationToken, Task<IssuedCertificate>> call, CancellationToken stopping)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=ZeroTrustMesh", key, HashAlgorithmName.SHA256);
        if (expected is { } id)
        {
            request.CertificateExtensions.Add(SubjectAltNames.ForUri(id.Value));
        }
        var issued = await call(request.CreateSigningRequest(), stopping);

        if (issued.Chain.Count == 0)
        {
            throw new InvalidDataException("the control plane returned no certificate");
        }
        using var leaf = X509CertificateLoader.LoadCertificate(issued.Chain[0]);
        var intermediates = issued.Chain.Skip(1).Select(c => X509CertificateLoader.LoadCertificate(c)).ToList();
        // Against the bundle that came with it (during a CA rotation it may hold a root not followed yet), and for both
        // purposes: the sidecar presents it as a client (outbound, to the control plane) and as a server (inbound).
        var verified = SvidVerifier.Verify(leaf, intermediates, issued.Bundle, time.GetUtcNow(), purpose: SvidPurpose.Client | SvidPurpose.Server);
        if (!verified.IsValid)
        {
            throw new InvalidDataException($"the issued certificate is not a valid SVID: {verified.Reason}");
        }
        if (verified.Id.Value != issued.SpiffeId || (expected is { } e && verified.Id != e))
        {
            throw new InvalidDataException($"the issued certificate is for '{verified.Id}', expected '{expected?.Value ?? issued.SpiffeId}'");
        }
        if (!leaf.PublicKey.EncodedKeyValue.RawData.AsSpan().SequenceEqual(request.PublicKey.EncodedKeyValue.RawData))
        {
            throw new InvalidDataException("the issued certificate is not for the key this sidecar generated");
        }

        var identity = new WorkloadIdentity(verified.Id, leaf.CopyWithPrivateKey(key), intermediates);
        state.ApplyBundle(issued.Bundle, "issuance");
        state.Set(identity);
        return identity;
    }

    private static string Describe(Exception e) => e switch
    {
        IdentityRefusedException or InvalidDataException => e.Message,
        Grpc.Core.RpcException rpc => $"{rpc.StatusCode}: {rpc.Status.Detail}",
        _ => $"{e.GetType().Name}: {e.Message}",
    };
}
