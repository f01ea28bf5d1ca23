namespace ZeroTrustMesh.ControlPlane.Discovery;

/// <summary>An operation the service's ApiSpec declares: method, path template (any parameter names), deprecated or not.</summary>
internal sealed record DeclaredOperation(string Method, string Template, bool Deprecated = false);

/// <summary>What the comparison of observed and declared operations found.</summary>
internal enum ApiFindingKind
{
    /// <summary>Called, and not declared: an endpoint nobody documented.</summary>
    Shadow,

    /// <summary>Declared <c>deprecated: true</c>, and still called.</summary>
    Zombie,

    /// <summary>Declared, and not called in the window the observations cover.</summary>
    Unused,
}

internal sealed record ApiFinding(ApiFindingKind Kind, string Method, string Template, long Requests);

/// <summary>The observed inventory of a service against its declared API (<c>ztmctl api diff</c>).</summary>
internal static class ApiDiff
{
    /// <summary>
    /// Whether <paramref name="declared"/> matches every request <paramref name="observed"/> stands for: the same number of
    /// segments, and each declared segment a parameter or the observed literal. An observed parameter is covered only by
    /// a declared parameter: a declared <c>/users/me</c> does not cover observed <c>/users/{}</c>.
    /// </summary>
    public static bool Covers(string declared, string observed)
    {
        var d = PathInventory.Segments(declared);
        var o = PathInventory.Segments(observed);
        if (d.Length != o.Length)
        {
            return false;
        }
        for (var i = 0; i < d.Length; i++)
        {
            if (d[i] != SegmentShape.Parameter && d[i] != o[i])
            {
                return false;
            }
        }
        return true;
    }

    public static IReadOnlyList<ApiFinding> Compare(IReadOnlyList<DeclaredOperation> declared, IReadOnlyList<ObservedOperation> observed)
    {
        var findings = new List<ApiFinding>();
        var called = new Dictionary<DeclaredOperation, long>();
        foreach (var operation in observed)
        {
            var covering = declared.Where(d => SameMethod(d.Method, operation.Method) && Covers(d.Template, operation.Template)).ToList();
            if (covering.Count == 0)
            {
                findings.Add(new ApiFinding(ApiFindingKind.Shadow, operation.Method, operation.Template, operation.Requests));
                continue;
            }
            // The most specific declaration is the one the request meant (/users/me before /users/{id}).
            var meant = covering.MaxBy(d => PathInventory.Segments(d.Template).Count(s => s != SegmentShape.Parameter))!;
            called[meant] = called.GetValueOrDefault(meant) + operation.Requests;
        }
        foreach (var operation in declared)
        {
            if (called.TryGetValue(operation, out var requests))
            {
                if (operation.Deprecated)
                {
                    findings.Add(new ApiFinding(ApiFindingKind.Zombie, operation.Method, operation.Template, requests));
                }
            }
            else
            {
                findings.Add(new ApiFinding(ApiFindingKind.Unused, operation.Method, operation.Template, 0));
            }
        }
        return findings;
    }

    private static bool SameMethod(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);
}
