using System.Security.Cryptography;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.Proto;

/// <summary>A received trust bundle (an issuance response's, a config snapshot's) as the model.</summary>
public static class TrustBundleMapping
{
    /// <summary>The bundle <paramref name="bundle"/> describes.</summary>
    /// <exception cref="FormatException">No roots, a root that is not a DER certificate, or an invalid trust domain.</exception>
    public static TrustBundle FromProto(V1.TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        if (bundle.Roots.Count == 0)
        {
            throw new FormatException($"trust bundle {bundle.Sequence} of '{bundle.TrustDomain}' has no root certificate");
        }
        try
        {
            return TrustBundle.FromDer(bundle.TrustDomain, bundle.Roots.Select(r => r.Memory), bundle.Sequence);
        }
        catch (CryptographicException)
        {
            throw new FormatException($"trust bundle {bundle.Sequence} of '{bundle.TrustDomain}' holds a root that is not a DER certificate");
        }
        catch (FormatException e)
        {
            throw new FormatException($"trust bundle {bundle.Sequence}: {e.Message}", e);
        }
    }
}
