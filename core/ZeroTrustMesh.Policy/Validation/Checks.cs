using System.Collections.Immutable;
using ZeroTrustMesh.Policy.Model;

namespace ZeroTrustMesh.Policy.Validation;

/// <summary>Checks every kind shares: metadata, selector, lists, ports.</summary>
internal static class Checks
{
    /// <summary>Upper bound of entries in any one list (principals, paths, values …), so a runaway generator cannot exhaust a sidecar.</summary>
    public const int MaxListEntries = 10_000;

    public static void Metadata(ResourceMetadata metadata, ErrorSink errors)
    {
        if (string.IsNullOrEmpty(metadata.Name))
        {
            errors.Add("metadata.name", "a name is required");
        }
        else if (!PolicySyntax.IsDnsSubdomain(metadata.Name))
        {
            errors.Add("metadata.name", $"'{metadata.Name}' is not a valid name: use lower-case letters, digits, '-' and '.', at most 253 characters");
        }
        if (!PolicySyntax.IsDnsLabel(metadata.Namespace))
        {
            errors.Add("metadata.namespace", $"'{metadata.Namespace}' is not a valid namespace: use lower-case letters, digits and '-', at most 63 characters");
        }
    }

    public static void Selector(WorkloadSelector? selector, ErrorSink errors)
    {
        if (selector is not null && !PolicySyntax.IsDnsLabel(selector.Service))
        {
            errors.Add("spec.selector.service", $"'{selector.Service}' is not a service name: use lower-case letters, digits and '-', at most 63 characters");
        }
    }

    public static void Ports(ImmutableArray<int> ports, string path, ErrorSink errors)
    {
        for (var i = 0; i < Length(ports); i++)
        {
            if (ports[i] is < 1 or > PolicySyntax.MaxPortNumber)
            {
                errors.Add($"{path}[{i}]", $"{ports[i]} is not a port: it must be 1 to {PolicySyntax.MaxPortNumber}");
            }
        }
    }

    public static void Each(ImmutableArray<string> values, string path, ErrorSink errors, Func<string, string?> check)
    {
        var count = Length(values);
        if (count > MaxListEntries)
        {
            errors.Add(path, $"{count} entries; at most {MaxListEntries} are allowed");
            return;
        }
        for (var i = 0; i < count; i++)
        {
            if (check(values[i]) is { } error)
            {
                errors.Add($"{path}[{i}]", error);
            }
        }
    }

    public static int Length<T>(ImmutableArray<T> array) => array.IsDefault ? 0 : array.Length;
}
