using System.Text;
using System.Text.Json;

namespace ZeroTrustMesh.Sidecar.Telemetry;

/// <summary>One JSON line per request on stdout: who called whom, what, the outcome, how long, how many bytes.</summary>
internal sealed class AccessLog
{
    private readonly TextWriter _out = Console.Out;

    public void Write(string direction, string source, string destination, string method, string path, int status, TimeSpan duration, long? bytesIn, long? bytesOut, string? reason = null)
    {
        using var buffer = new MemoryStream(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("time", DateTimeOffset.UtcNow);
            json.WriteString("log", "access");
            json.WriteString("direction", direction);
            json.WriteString("source", source);
            json.WriteString("destination", destination);
            json.WriteString("method", method);
            json.WriteString("path", path);
            json.WriteNumber("status", status);
            json.WriteNumber("duration_ms", Math.Round(duration.TotalMilliseconds, 3));
            if (bytesIn is { } i)
            {
                json.WriteNumber("bytes_in", i);
            }
            if (bytesOut is { } o)
            {
                json.WriteNumber("bytes_out", o);
            }
            if (reason is not null)
            {
                json.WriteString("reason", reason);
            }
            json.WriteEndObject();
        }
        _out.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }
}
