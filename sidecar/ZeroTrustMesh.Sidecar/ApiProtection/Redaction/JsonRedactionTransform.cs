using ZeroTrustMesh.Sidecar.Inbound;

namespace ZeroTrustMesh.Sidecar.ApiProtection.Redaction;

/// <summary>
/// Response redaction as a transform of the inbound path, registered by a stage for one request
/// (<see cref="InboundRequest.TransformResponse"/>; one instance per request: <see cref="Applies"/> picks the redactor
/// that <see cref="Wrap"/> uses). It applies to a JSON response (<c>application/json</c> or <c>+json</c>, any
/// parameters) whose status has a redactor, with a body (not to HEAD); every other response passes untouched, and its
/// Content-Length is kept. The body streams through a <see cref="JsonRedaction"/>.
/// </summary>
/// <param name="redactorForStatus">The operation's redactor for a response status; null: that status is not redacted.</param>
/// <param name="redacted">Called once per redacted response with the number of values removed or masked.</param>
/// <param name="invalidJson">Called (once) when a redacted response was not valid JSON: its body ended where it went wrong.</param>
internal sealed class JsonRedactionTransform(Func<int, ResponseRedactor?> redactorForStatus, Action<int> redacted, Action? invalidJson = null)
    : IResponseTransform
{
    private ResponseRedactor? _redactor;

    public bool Applies(HttpResponse response)
    {
        _redactor = IsJson(response.ContentType) && !HttpMethods.IsHead(response.HttpContext.Request.Method)
            ? redactorForStatus(response.StatusCode)
            : null;
        return _redactor is not null;
    }

    public Stream Wrap(Stream downstream) =>
        new RedactingStream(new JsonRedaction(_redactor ?? throw new InvalidOperationException("Wrap is called after Applies returned true")),
            downstream, redacted, invalidJson);

    /// <summary><c>application/json</c> or <c>type/subtype+json</c>, case-insensitive, whatever its parameters (charset).</summary>
    internal static bool IsJson(string? contentType)
    {
        var type = contentType.AsSpan();
        if (type.IndexOf(';') is var semicolon and >= 0)
        {
            type = type[..semicolon];
        }
        type = type.Trim();
        return type.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || (type.EndsWith("+json", StringComparison.OrdinalIgnoreCase) && type.IndexOf('/') > 0);
    }

    /// <summary>
    /// The most of one write that goes through the redaction before its output is sent on (each send is a flush: a
    /// chunk, a TLS record, a system call). YARP writes up to 64 KiB at a time; the redaction reads a write where it
    /// lies and carries only a token cut at its end, and the output of one slice (about its size, as the output is
    /// the input's bytes less what is removed) fits a pooled 64 KiB array, below the large-object heap's 85,000 bytes
    /// that only a full, blocking collection frees. A 64 KiB write goes out in 2 sends.
    /// </summary>
    internal const int SliceBytes = 32 * 1024;

    /// <summary>The app's body, written by the proxy, on its way to the caller through the redaction.</summary>
    private sealed class RedactingStream(JsonRedaction redaction, Stream downstream, Action<int> redacted, Action? invalidJson) : Stream
    {
        private bool _completed;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (!buffer.IsEmpty)
            {
                var slice = buffer[..Math.Min(buffer.Length, SliceBytes)];
                buffer = buffer[slice.Length..];
                redaction.Write(slice.Span);
                if (redaction.Output.Length > 0)
                {
                    await downstream.WriteAsync(redaction.Output, cancellationToken);
                    redaction.TakeOutput();
                }
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            while (!buffer.IsEmpty)
            {
                var slice = buffer[..Math.Min(buffer.Length, SliceBytes)];
                buffer = buffer[slice.Length..];
                redaction.Write(slice);
                if (redaction.Output.Length > 0)
                {
                    downstream.Write(redaction.Output.Span);
                    redaction.TakeOutput();
                }
            }
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => downstream.FlushAsync(cancellationToken);

        public override void Flush() => downstream.Flush();

        /// <summary>The body has ended: the rest of the redacted JSON goes out, and the redaction is counted.</summary>
        public override async ValueTask DisposeAsync()
        {
            if (!_completed)
            {
                _completed = true;
                try
                {
                    redaction.Complete();
                    if (redaction.Output.Length > 0)
                    {
                        await downstream.WriteAsync(redaction.Output);
                    }
                }
                catch (Exception e) when (CallerGone(e))
                {
                    // The proxy has seen (and recorded) the same failure on its own writes.
                }
                finally
                {
                    Report();
                }
            }
            await base.DisposeAsync();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_completed)
            {
                _completed = true;
                try
                {
                    redaction.Complete();
                    if (redaction.Output.Length > 0)
                    {
                        downstream.Write(redaction.Output.Span);
                    }
                }
                catch (Exception e) when (CallerGone(e))
                {
                }
                finally
                {
                    Report();
                }
            }
            base.Dispose(disposing);
        }

        /// <summary>The caller's side is closed (it went away, or the response was aborted): the end of the body has nowhere to go.</summary>
        private static bool CallerGone(Exception e) => e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException;

        private void Report()
        {
            redacted(redaction.Redacted);
            if (redaction.Invalid)
            {
                invalidJson?.Invoke();
            }
            redaction.Dispose();
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
