using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ZeroTrustMesh.DecisionLog;

namespace ZeroTrustMesh.Proto;

/// <summary>A decision-log checkpoint on the wire and as the model (<see cref="Checkpoint"/>).</summary>
public static class CheckpointMapping
{
    public static V1.DecisionLogCheckpoint ToProto(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var proto = new V1.DecisionLogCheckpoint
        {
            Workload = checkpoint.Workload,
            Chain = checkpoint.Chain,
            Sequence = (ulong)checkpoint.Sequence,
            Hash = checkpoint.Hash,
            Time = Timestamp.FromDateTimeOffset(checkpoint.Time),
            Segment = checkpoint.Segment,
            Signature = ByteString.CopyFrom(checkpoint.Signature),
        };
        proto.Certificates.AddRange(checkpoint.Certificates.Select(ByteString.CopyFrom));
        return proto;
    }

    /// <exception cref="FormatException">A field is missing or out of range: the message names it.</exception>
    public static Checkpoint FromProto(V1.DecisionLogCheckpoint proto)
    {
        ArgumentNullException.ThrowIfNull(proto);
        if (proto.Sequence is 0 or > long.MaxValue)
        {
            throw new FormatException($"sequence {proto.Sequence} is out of range");
        }
        if (proto.Time is null)
        {
            throw new FormatException("time is required");
        }
        if (proto.Hash.Length != RecordFormat.HashBytes * 2)
        {
            throw new FormatException("hash must be 64 hex digits");
        }
        if (proto.Certificates.Count == 0 || proto.Signature.IsEmpty)
        {
            throw new FormatException("signature and certificates are required");
        }
        return new Checkpoint(proto.Workload, proto.Chain, (long)proto.Sequence, proto.Hash, proto.Time.ToDateTimeOffset(), proto.Segment,
            proto.Signature.ToByteArray(), [.. proto.Certificates.Select(c => c.ToByteArray())]);
    }
}
