using System.Net;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;

namespace ZeroTrustMesh.Policy.Authorization;

/// <summary>
/// One rule, pre-compiled: sets instead of lists, a method bitmask, integer CIDRs, so that matching allocates nothing.
/// <see cref="Id"/> orders rules by (policy namespace, policy name, rule index) so that the deciding rule is the same
/// whichever index found it.
/// </summary>
internal sealed class CompiledRule(int id, PolicyAction action, string policy, int ruleIndex, SourceMatcher[] from, OperationMatcher[] to, ConditionMatcher[] when,
    string? note = null)
{
    public int Id { get; } = id;
    public PolicyAction Action { get; } = action;
    public string Policy { get; } = policy;
    public int RuleIndex { get; } = ruleIndex;
    public SourceMatcher[] From { get; } = from;
    public OperationMatcher[] To { get; } = to;
    public ConditionMatcher[] When { get; } = when;

    /// <summary>For an AUDIT rule: its policy's position in <see cref="PolicySnapshot.AuditPolicies"/> (a bit of <see cref="AuditOutcome"/>); -1 otherwise.</summary>
    public int AuditSlot { get; init; } = -1;

    /// <summary>Why the rule decided, with <c>note</c> appended in parentheses (how a connection read it).</summary>
    public string Reason { get; } = (action switch
    {
        PolicyAction.Deny => $"denied by DENY policy '{policy}' rule {ruleIndex}",
        PolicyAction.Allow => $"allowed by ALLOW policy '{policy}' rule {ruleIndex}",
        _ => $"audited by AUDIT policy '{policy}' rule {ruleIndex}",
    }) + (note is null ? "" : $" ({note})");

    public bool Matches(in RequestAttributes request, ReadOnlySpan<char> path, uint methodBit)
    {
        if (From.Length > 0)
        {
            var any = false;
            foreach (var source in From)
            {
                if (source.Matches(request))
                {
                    any = true;
                    break;
                }
            }
            if (!any)
            {
                return false;
            }
        }
        if (To.Length > 0)
        {
            var any = false;
            foreach (var operation in To)
            {
                if (operation.Matches(path, methodBit, request.Port))
                {
                    any = true;
                    break;
                }
            }
            if (!any)
            {
                return false;
            }
        }
        foreach (var condition in When)
        {
            if (!condition.Matches(request))
            {
                return false;
            }
        }
        return true;
    }
}

internal sealed class SourceMatcher
{
    private readonly HashSet<string>? _principals;
    private readonly string[] _principalPrefixes;
    private readonly bool _anyPrincipal;
    private readonly HashSet<string>? _namespaces;
    private readonly bool _anyNamespace;
    private readonly (string Issuer, string Subject)[] _requestPrincipals;
    private readonly bool _anyRequestPrincipal;

    public SourceMatcher(RuleSource source)
    {
        var principals = source.Principals.IsDefault ? [] : source.Principals;
        _anyPrincipal = principals.Contains("*");
        ExactPrincipals = [.. principals.Where(p => p != "*" && !p.EndsWith("/*", StringComparison.Ordinal))];
        _principals = principals.IsEmpty ? null : new HashSet<string>(ExactPrincipals, StringComparer.Ordinal);
        _principalPrefixes = [.. principals.Where(p => p != "*" && p.EndsWith("/*", StringComparison.Ordinal)).Select(p => p[..^1])];

        var namespaces = source.Namespaces.IsDefault ? [] : source.Namespaces;
        _anyNamespace = namespaces.Contains("*");
        _namespaces = namespaces.IsEmpty ? null : new HashSet<string>(namespaces, StringComparer.Ordinal);

        var requestPrincipals = source.RequestPrincipals.IsDefault ? [] : source.RequestPrincipals;
        _anyRequestPrincipal = requestPrincipals.Contains("*");
        _requestPrincipals = [.. requestPrincipals.Where(p => p != "*").Select(p =>
        {
            // Validated before compiling; a failure here is a bug, and must not turn into a match.
            return PolicySyntax.TryParseRequestPrincipal(p, out var issuer, out var subject)
                ? (issuer, subject)
                : throw new InvalidOperationException($"Unvalidated request principal '{p}'.");
        })];
        HasRequestPrincipals = !requestPrincipals.IsEmpty;
    }

    /// <summary>Exact principals; when every source of a rule has only these, the rule is indexed by caller.</summary>
    public string[] ExactPrincipals { get; }

    public bool OnlyExactPrincipals => _principals is not null && !_anyPrincipal && _principalPrefixes.Length == 0;

    private bool HasRequestPrincipals { get; }

    public bool Matches(in RequestAttributes request)
    {
        if (_principals is not null)
        {
            if (request.Caller is not { IsEmpty: false } caller)
            {
                return false;
            }
            if (!_anyPrincipal && !_principals.Contains(caller.Value) && !StartsWithAny(caller.Value, _principalPrefixes))
            {
                return false;
            }
        }
        if (_namespaces is not null)
        {
            if (request.CallerNamespace is not { } ns || !(_anyNamespace || _namespaces.Contains(ns)))
            {
                return false;
            }
        }
        if (HasRequestPrincipals)
        {
            if (request.Claims is not { } claims
                || !claims.TryGetValue("iss", 0, out var issuer)
                || !claims.TryGetValue("sub", 0, out var subject))
            {
                return false;
            }
            if (!_anyRequestPrincipal && !MatchesRequestPrincipal(issuer, subject))
            {
                return false;
            }
        }
        return true;
    }

    private bool MatchesRequestPrincipal(string issuer, string subject)
    {
        foreach (var (i, s) in _requestPrincipals)
        {
            if (string.Equals(i, issuer, StringComparison.Ordinal) && (s == "*" || string.Equals(s, subject, StringComparison.Ordinal)))
            {
                return true;
            }
        }
        return false;
    }

    private static bool StartsWithAny(string value, string[] prefixes)
    {
        foreach (var prefix in prefixes)
        {
            if (value.StartsWith(prefix, StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }
}

internal sealed class OperationMatcher
{
    private readonly uint _methods;
    private readonly PathMatcher? _paths;
    private readonly int[] _ports;

    public OperationMatcher(RuleOperation operation)
    {
        var methods = operation.Methods.IsDefault ? [] : operation.Methods;
        _methods = methods.IsEmpty || methods.Contains("*")
            ? PolicySyntax.AllMethods
            : methods.Aggregate(0u, (mask, m) => mask | PolicySyntax.MethodBit(m));
        var paths = operation.Paths.IsDefault ? [] : operation.Paths;
        Patterns = [.. paths.Select(StringPattern.ParsePath)];
        _paths = paths.IsEmpty ? null : new PathMatcher(Patterns);
        _ports = operation.Ports.IsDefault ? [] : [.. operation.Ports.Distinct()];
    }

    public StringPattern[] Patterns { get; }

    public bool Matches(ReadOnlySpan<char> path, uint methodBit, int port)
    {
        if ((_methods & methodBit) == 0)
        {
            return false;
        }
        if (_ports.Length > 0 && Array.IndexOf(_ports, port) < 0)
        {
            return false;
        }
        return _paths is null || _paths.Matches(path);
    }
}

/// <summary>
/// Exact paths, prefixes and suffixes, each in a hash set looked up by span: cost grows with the number of distinct
/// pattern lengths, not patterns. Templates are tried one by one (<see cref="PathTemplate"/>), after the sets.
/// </summary>
internal sealed class PathMatcher
{
    private readonly string[] _templates;
    private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _exact;
    private readonly int _exactCount;
    private readonly AffixSet _prefixes;
    private readonly AffixSet _suffixes;
    private readonly bool _any;

    public PathMatcher(IEnumerable<StringPattern> patterns)
    {
        var list = patterns.ToList();
        var exact = new HashSet<string>(list.Where(p => p.Kind == PatternKind.Exact).Select(p => p.Text), StringComparer.Ordinal);
        _exact = exact.GetAlternateLookup<ReadOnlySpan<char>>();
        _exactCount = exact.Count;
        _prefixes = new AffixSet(list.Where(p => p.Kind == PatternKind.Prefix).Select(p => p.Text), fromStart: true);
        _suffixes = new AffixSet(list.Where(p => p.Kind == PatternKind.Suffix).Select(p => p.Text), fromStart: false);
        _any = list.Any(p => p.Kind == PatternKind.Any);
        _templates = [.. list.Where(p => p.Kind == PatternKind.Template).Select(p => p.Text).Distinct(StringComparer.Ordinal)];
    }

    public bool Matches(ReadOnlySpan<char> path) =>
        _any || (_exactCount > 0 && _exact.Contains(path)) || _prefixes.MatchesAny(path) || _suffixes.MatchesAny(path) || MatchesTemplate(path);

    private bool MatchesTemplate(ReadOnlySpan<char> path)
    {
        foreach (var template in _templates)
        {
            if (PathTemplate.Matches(template, path))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Prefixes (or suffixes) by length: a path has at most one prefix of each length, so it matches one of the
    /// patterns exactly when, for some pattern length, its slice of that length is in the set. A workload with a
    /// thousand path rules costs a few lookups per request, not a thousand comparisons.
    /// </summary>
    private sealed class AffixSet
    {
        private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _set;
        private readonly int[] _lengths;
        private readonly bool _fromStart;

        public AffixSet(IEnumerable<string> affixes, bool fromStart)
        {
            var set = new HashSet<string>(affixes, StringComparer.Ordinal);
            _set = set.GetAlternateLookup<ReadOnlySpan<char>>();
            _lengths = [.. set.Select(a => a.Length).Distinct().Order()];
            _fromStart = fromStart;
        }

        public bool MatchesAny(ReadOnlySpan<char> path)
        {
            foreach (var length in _lengths)
            {
                if (length > path.Length)
                {
                    return false;
                }
                if (_set.Contains(_fromStart ? path[..length] : path[^length..]))
                {
                    return true;
                }
            }
            return false;
        }
    }
}

internal abstract class ConditionMatcher
{
    public abstract bool Matches(in RequestAttributes request);

    public static ConditionMatcher Create(RuleCondition condition)
    {
        if (!ConditionKeys.TryParse(condition.Key, out var kind, out var name))
        {
            throw new InvalidOperationException($"Unvalidated condition key '{condition.Key}'.");
        }
        var values = condition.Values.IsDefault ? [] : condition.Values;
        var notValues = condition.NotValues.IsDefault ? [] : condition.NotValues;
        switch (kind)
        {
            case ConditionKind.SourceIp:
                return new SourceIpCondition([.. values.Select(ParseRange)], [.. notValues.Select(ParseRange)]);
            case ConditionKind.Time:
                if (!TimeWindow.TryFindTimeZone(condition.TimeZone, out var zone))
                {
                    throw new InvalidOperationException($"Unvalidated time zone '{condition.TimeZone}'.");
                }
                var days = 0;
                foreach (var d in condition.Days.IsDefault ? [] : condition.Days)
                {
                    days |= TimeWindow.TryParseDay(d, out var day) ? 1 << (int)day : throw new InvalidOperationException($"Unvalidated day '{d}'.");
                }
                return new TimeCondition(zone, days, [.. values.Select(ParseWindow)], [.. notValues.Select(ParseWindow)]);
            default:
                // OAuth 2 'scope' (RFC 8693 §4.2) and Azure AD's 'scp' are space-separated lists in one string.
                var split = kind == ConditionKind.Claim && name is "scope" or "scp";
                return new ValueCondition(kind == ConditionKind.Header, name, split,
                    [.. values.Select(StringPattern.Parse)], [.. notValues.Select(StringPattern.Parse)]);
        }

        static IpRange ParseRange(string v) => IpRange.TryParse(v, out var range, out _) ? range : throw new FormatException(v);

        static TimeWindow ParseWindow(string v) => TimeWindow.TryParse(v, out var window) ? window : throw new FormatException(v);
    }
}

/// <summary>Headers and claims: some value matches one of <c>values</c>, and no value matches one of <c>notValues</c>.</summary>
internal sealed class ValueCondition(bool header, string name, bool splitSpaces, StringPattern[] values, StringPattern[] notValues) : ConditionMatcher
{
    // A bound on values read per attribute, so a hostile request with thousands of header copies stays cheap.
    private const int MaxValues = 64;

    public override bool Matches(in RequestAttributes request)
    {
        var source = header ? request.Headers : request.Claims;
        var matched = false;
        if (source is not null)
        {
            for (var i = 0; i < MaxValues && source.TryGetValue(name, i, out var value); i++)
            {
                if (splitSpaces)
                {
                    foreach (var range in value.AsSpan().Split(' '))
                    {
                        var token = value.AsSpan()[range];
                        if (!token.IsEmpty && Check(token, ref matched))
                        {
                            return false;
                        }
                    }
                }
                else if (Check(value, ref matched))
                {
                    return false;
                }
            }
        }
        return values.Length == 0 || matched;
    }

    /// <summary>Records a <c>values</c> match; returns true when a <c>notValues</c> entry matched (the condition fails).</summary>
    private bool Check(ReadOnlySpan<char> value, ref bool matched)
    {
        if (!matched && MatchesAny(values, value))
        {
            matched = true;
        }
        return notValues.Length > 0 && MatchesAny(notValues, value);
    }

    private static bool MatchesAny(StringPattern[] patterns, ReadOnlySpan<char> value)
    {
        foreach (var pattern in patterns)
        {
            if (pattern.Matches(value))
            {
                return true;
            }
        }
        return false;
    }
}

internal sealed class SourceIpCondition(IpRange[] values, IpRange[] notValues) : ConditionMatcher
{
    public override bool Matches(in RequestAttributes request)
    {
        if (request.SourceAddress is not { } address)
        {
            return values.Length == 0;
        }
        return (values.Length == 0 || Contains(values, address)) && !Contains(notValues, address);
    }

    private static bool Contains(IpRange[] ranges, IPAddress address)
    {
        foreach (var range in ranges)
        {
            if (range.Contains(address))
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>
/// Time windows in a time zone. A window that crosses midnight (<c>22:00-06:00</c>) belongs to the day it starts on, so
/// "Fri 22:00-06:00" covers Saturday 02:00 and not Monday 02:00.
/// </summary>
internal sealed class TimeCondition(TimeZoneInfo zone, int days, TimeWindow[] values, TimeWindow[] notValues) : ConditionMatcher
{
    public override bool Matches(in RequestAttributes request)
    {
        var local = TimeZoneInfo.ConvertTime(request.Now, zone);
        var minutes = (local.Hour * 60) + local.Minute;
        return (values.Length == 0 || InAny(values, minutes, local.DayOfWeek)) && !InAny(notValues, minutes, local.DayOfWeek);
    }

    private bool InAny(TimeWindow[] windows, int minutes, DayOfWeek today)
    {
        foreach (var window in windows)
        {
            DayOfWeek startDay;
            if (window.Start < window.End)
            {
                if (minutes < window.Start || minutes >= window.End)
                {
                    continue;
                }
                startDay = today;
            }
            else if (minutes >= window.Start)
            {
                startDay = today;
            }
            else if (minutes < window.End)
            {
                startDay = (DayOfWeek)(((int)today + 6) % 7);
            }
            else
            {
                continue;
            }
            if (days == 0 || (days & (1 << (int)startDay)) != 0)
            {
                return true;
            }
        }
        return false;
    }
}
