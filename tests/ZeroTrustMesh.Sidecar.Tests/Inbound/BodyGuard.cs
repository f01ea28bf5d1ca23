using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Http;
using System.Text.Json.Nodes;
using System.Text.Json;
using ZeroTrustMesh.Policy.Kinds;
using ZeroTrustMesh.Policy.Model;
using ZeroTrustMesh.Policy.Validation;
using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.Tests.Inbound;

/// <summary>
/// A policy kind defined entirely in the tests project, to show that a kind is its folder plus one registration line:
/// <c>kind: BodyGuard</c> refuses a JSON request body over <c>maxBodyBytes</c> (413) or holding <c>forbidden</c> (403), and
/// replaces <c>redact</c> with <c>***</c> in text responses. It exercises both things a stage can ask for: the request
/// body with a cap, and a response transform.
/// </summary>
public sealed record BodyGuard(ResourceMetadata Metadata, BodyGuardSpec Spec) : PolicyResource(Metadata)
{
    public override string Kind => "BodyGuard";

    public override WorkloadSelector? Selector => Spec.Selector;
}

public sealed record BodyGuardSpec(WorkloadSelector? Selector, string Forbidden, int MaxBodyBytes, string? Redact);

public sealed class BodyGuardKind : PolicyKind<BodyGuard>
{
    public static readonly BodyGuardKind Instance = new();

    private BodyGuardKind()
    {
    }

    public override string Name => "BodyGuard";

    protected override BodyGuard ReadSpec(ResourceMetadata metadata, JsonObject? spec, SpecReader reader)
    {
        if (spec is null)
        {
            return new BodyGuard(metadata, new BodyGuardSpec(null, "", 0, null));
        }
        reader.Keys(spec, "spec", "selector", "forbidden", "maxBodyBytes", "redact");
        return new BodyGuard(metadata, new BodyGuardSpec(
            reader.Selector(spec),
            reader.Text(spec, "forbidden", "spec") ?? "",
            reader.Number(SpecReader.Child(spec, "maxBodyBytes"), "spec.maxBodyBytes") ?? 0,
            reader.Text(spec, "redact", "spec")));
    }

    protected override void WriteSpec(BodyGuard resource, Utf8JsonWriter json)
    {
        ResourceWriter.Selector(json, resource.Spec.Selector);
        json.WriteString("forbidden", resource.Spec.Forbidden);
        json.WriteNumber("maxBodyBytes", resource.Spec.MaxBodyBytes);
        ResourceWriter.Optional(json, "redact", resource.Spec.Redact);
    }

    protected override void Validate(BodyGuard resource, ErrorSink errors)
    {
        if (resource.Spec.Forbidden.Length == 0)
        {
            errors.Add("spec.forbidden", "a forbidden word is required");
        }
        if (resource.Spec.MaxBodyBytes < 1)
        {
            errors.Add("spec.maxBodyBytes", $"{resource.Spec.MaxBodyBytes} must be at least 1");
        }
    }
}

/// <summary>The sidecar's side of <c>BodyGuard</c>: its stage, after authorization and rate limits.</summary>
internal sealed class BodyGuardStageKind : IInboundStageKind
{
    /// <summary>Per request the stage saw: the path, and whether the body had been buffered when it was done.</summary>
    public ConcurrentQueue<(string Path, bool BodyBuffered)> Seen { get; } = new();

    public PolicyKind Kind => BodyGuardKind.Instance;

    public int Order => InboundStageOrder.ApiProtection;

    public IInboundStage? Compile(IReadOnlyList<PolicyResource> resources, StageContext context) =>
        resources.Count == 0 ? null : new Stage((BodyGuard)resources[0], Seen);

    private sealed class Stage(BodyGuard guard, ConcurrentQueue<(string, bool)> seen) : IInboundStage
    {
        public string Summary => $"forbids '{guard.Spec.Forbidden}' in bodies up to {guard.Spec.MaxBodyBytes} bytes";

        public async ValueTask<StageResult> RunAsync(InboundRequest request, CancellationToken cancellation)
        {
            try
            {
                if (guard.Spec.Redact is { } redact)
                {
                    request.TransformResponse(new Redaction(redact));
                }
                // Only JSON bodies are read: every other request passes without its body being touched.
                if (request.Http.Request.ContentType?.StartsWith("application/json", StringComparison.Ordinal) != true)
                {
                    return StageResult.Continue;
                }
                var body = await request.ReadBodyAsync(guard.Spec.MaxBodyBytes, cancellation);
                if (body.Status == RequestBodyStatus.TooLarge)
                {
                    return StageResult.Refuse(new Refusal(StatusCodes.Status413PayloadTooLarge, "body_too_large",
                        $"BodyGuard {guard.Metadata.Namespace}/{guard.Metadata.Name}: the body is over {guard.Spec.MaxBodyBytes} bytes"));
                }
                return Encoding.UTF8.GetString(body.Bytes.Span).Contains(guard.Spec.Forbidden, StringComparison.Ordinal)
                    ? StageResult.Refuse(new Refusal(StatusCodes.Status403Forbidden, "body_forbidden",
                        $"BodyGuard {guard.Metadata.Namespace}/{guard.Metadata.Name}: the body holds '{guard.Spec.Forbidden}'"))
                    : StageResult.Continue;
            }
            finally
            {
                seen.Enqueue((request.Path, request.BodyBuffered));
            }
        }
    }

    /// <summary>Replaces a word in text responses as they stream through (whole writes only: enough for a test).</summary>
    private sealed class Redaction(string word) : IResponseTransform
    {
        public bool Applies(HttpResponse response) => response.ContentType?.StartsWith("text/plain", StringComparison.Ordinal) == true;

        public Stream Wrap(Stream downstream) => new Redacting(downstream, word);

        private sealed class Redacting(Stream downstream, string word) : Stream
        {
            private readonly MemoryStream _held = new();

            public override bool CanRead => false;

            public override bool CanSeek => false;

            public override bool CanWrite => true;

            public override long Length => throw new NotSupportedException();

            public override long Position
            {
                get => throw new NotSupportedException();
                set => throw new NotSupportedException();
            }

            public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
            {
                _held.Write(buffer.Span);
                return ValueTask.CompletedTask;
            }

            public override void Write(byte[] buffer, int offset, int count) => _held.Write(buffer, offset, count);

            public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

            public override void Flush()
            {
            }

            public override async ValueTask DisposeAsync()
            {
                var text = Encoding.UTF8.GetString(_held.ToArray()).Replace(word, "***", StringComparison.Ordinal);
                await downstream.WriteAsync(Encoding.UTF8.GetBytes(text));
                await base.DisposeAsync();
            }

            public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

            public override void SetLength(long value) => throw new NotSupportedException();
        }
    }
}
