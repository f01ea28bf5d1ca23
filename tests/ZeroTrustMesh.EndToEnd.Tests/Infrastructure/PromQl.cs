using System.Text;

namespace ZeroTrustMesh.EndToEnd.Tests.Infrastructure;

/// <summary>
/// Just enough of PromQL's lexical structure to list the series selectors of an expression (<c>name{matchers}</c>,
/// <c>name</c> or <c>{matchers}</c>), so that a test can ask Prometheus whether each one selects anything. The
/// Prometheus here (Debian's 2.42) has no <c>/api/v1/parse_query</c>.
/// </summary>
internal static class PromQl
{
    /// <summary>Words that are operators, not metric names: aggregations, set and comparison modifiers, <c>offset</c>.</summary>
    private static readonly HashSet<string> Keywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
        "and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
    };

    /// <summary>Modifiers followed by a parenthesized list of label names (not an expression).</summary>
    private static readonly HashSet<string> LabelLists = new(StringComparer.OrdinalIgnoreCase) { "by", "without", "on", "ignoring", "group_left", "group_right" };

    /// <summary>The selectors of <paramref name="expression"/>, in order, as they are written (range and offset left out).</summary>
    public static IReadOnlyList<string> Selectors(string expression)
    {
        var selectors = new List<string>();
        var i = 0;
        while (i < expression.Length)
        {
            var c = expression[i];
            if (c is '"' or '\'' or '`')
            {
                i = SkipString(expression, i);
            }
            else if (c == '[')
            {
                i = expression.IndexOf(']', i) + 1; // a range or subquery duration
            }
            else if (c == '{')
            {
                var end = SkipBraces(expression, i);
                selectors.Add(expression[i..end]);
                i = end;
            }
            else if (char.IsAsciiLetter(c) || c is '_' or ':')
            {
                var start = i;
                while (i < expression.Length && (char.IsAsciiLetterOrDigit(expression[i]) || expression[i] is '_' or ':'))
                {
                    i++;
                }
                var word = expression[start..i];
                var next = SkipSpaces(expression, i);
                if (LabelLists.Contains(word) && next < expression.Length && expression[next] == '(')
                {
                    i = expression.IndexOf(')', next) + 1;
                }
                else if (Keywords.Contains(word) || (next < expression.Length && expression[next] == '('))
                {
                    // an operator, or a function call: its arguments are read as they come
                }
                else if (next < expression.Length && expression[next] == '{')
                {
                    i = SkipBraces(expression, next);
                    selectors.Add(word + expression[next..i]);
                }
                else
                {
                    selectors.Add(word);
                }
            }
            else if (char.IsAsciiDigit(c) || c == '.')
            {
                while (i < expression.Length && (char.IsAsciiLetterOrDigit(expression[i]) || expression[i] == '.'))
                {
                    i++; // a number or a duration (0.99, 5m, 1h30m)
                }
            }
            else
            {
                i++;
            }
        }
        return selectors;
    }

    private static int SkipSpaces(string text, int i)
    {
        while (i < text.Length && char.IsWhiteSpace(text[i]))
        {
            i++;
        }
        return i;
    }

    private static int SkipString(string text, int i)
    {
        var quote = text[i++];
        while (i < text.Length && text[i] != quote)
        {
            i += text[i] == '\\' && quote != '`' ? 2 : 1;
        }
        return i + 1;
    }

    private static int SkipBraces(string text, int i)
    {
        for (i++; i < text.Length && text[i] != '}';)
        {
            i = text[i] is '"' or '\'' or '`' ? SkipString(text, i) : i + 1;
        }
        return i + 1;
    }

    /// <summary>An expression on one line, for messages.</summary>
    public static string OneLine(string expression)
    {
        var text = new StringBuilder();
        foreach (var part in expression.Split((char[])['\n', '\r'], StringSplitOptions.RemoveEmptyEntries))
        {
            text.Append(part.Trim()).Append(' ');
        }
        return text.ToString().Trim();
    }
}
