using System.CommandLine;
using ZeroTrustMesh.Identity;

namespace ZeroTrustMesh.CommandLine;

/// <summary>Options and conventions every ZeroTrustMesh executable shares.</summary>
public static class CommandLineOptions
{
    /// <summary>Exit code for a command line that does not parse or validate.</summary>
    public const int UsageError = 2;

    /// <summary>A duration option written as <c>90s</c>, <c>10m</c>, <c>1h</c> or <c>7d</c>.</summary>
    public static Option<TimeSpan> Duration(string name, string description, string defaultValue) => new(name)
    {
        Description = $"{description} (e.g. 90s, 10m, 1h; default {defaultValue})",
        DefaultValueFactory = _ => Durations.TryParse(defaultValue, out var d) ? d : throw new InvalidOperationException(defaultValue),
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (Durations.TryParse(text, out var duration))
            {
                return duration;
            }
            result.AddError($"{name} '{text}' is not a duration like 90s, 10m or 1h");
            return default;
        },
    };

    /// <summary>
    /// Parses and runs <paramref name="command"/>. A parse error prints one line per error to stderr,
    /// prefixed with the program name, and exits with <see cref="UsageError"/>.
    /// </summary>
    public static int Run(RootCommand command, string[] args)
    {
        var result = command.Parse(args);
        if (result.Errors.Count > 0)
        {
            foreach (var error in result.Errors)
            {
                Console.Error.WriteLine($"{command.Name}: {error.Message}");
            }
            return UsageError;
        }
        return result.Invoke();
    }
}
