using k8s.Models;

namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>Kubernetes label selector semantics (apimachinery's <c>LabelSelectorAsSelector</c>), to see whom a webhook calls.</summary>
internal static class LabelSelectors
{
    /// <summary>A null selector matches everything, as the API server treats a webhook's absent namespace/object selector.</summary>
    public static bool Matches(V1LabelSelector? selector, IReadOnlyDictionary<string, string> labels)
    {
        if (selector is null)
        {
            return true;
        }
        foreach (var (key, value) in selector.MatchLabels ?? new Dictionary<string, string>())
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }
        foreach (var requirement in selector.MatchExpressions ?? [])
        {
            var has = labels.TryGetValue(requirement.Key, out var actual);
            var values = requirement.Values ?? [];
            var ok = requirement.OperatorProperty switch
            {
                "In" => has && values.Contains(actual!),
                "NotIn" => !has || !values.Contains(actual!),
                "Exists" => has,
                "DoesNotExist" => !has,
                var other => throw new InvalidOperationException($"unknown selector operator '{other}'"),
            };
            if (!ok)
            {
                return false;
            }
        }
        return true;
    }
}
