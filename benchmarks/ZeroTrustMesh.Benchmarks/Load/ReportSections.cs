using System.Globalization;
using System.Text;

namespace ZeroTrustMesh.Benchmarks.Load;

/// <summary>The report's sections beyond HTTP/1.1 capacity and latency: HTTP/2 and gRPC, new connections, exec → ready, the control plane.</summary>
internal static class ReportSections
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void AppendProtocols(StringBuilder md, DataPlaneReport report)
    {
        var s = report.Settings;
        foreach (var (phase, title, explain) in new[]
        {
            (DataPlaneRun.Http2, "HTTP/2 capacity (closed loop, h2load)", $"`h2load -c{s.H2Clients} -m{s.H2Streams}`, {s.H2Seconds:0.#} s, h2c prior knowledge into the target (`GET {s.Path}`, `:authority: orders`). Mean time per request (h2load gives no percentiles)."),
            (DataPlaneRun.Grpc, "gRPC unary capacity (closed loop, h2load)", $"`h2load -c{s.H2Clients} -m{s.H2Streams}`, {s.H2Seconds:0.#} s: `POST /ztm.v1.Echo/Unary` with `content-type: application/grpc`, `te: trailers` and a length-prefixed `EchoRequest` (each entry checked once for `grpc-status: 0` before measuring)."),
            (DataPlaneRun.NewConnection, "New-connection cost (one request per connection)", $"{s.NewConnectionWorkers} closed loops for {s.NewConnectionSeconds:0.#} s, each: new TCP connection, full TLS 1.3 handshake (resumption off) presenting a client SVID and verifying the server's against the bundle, one HTTP/2 `GET {s.Path}`, close — against the pair's server side (the sidecar's inbound port, the server-side haproxy/nginx). Direct: a new plaintext HTTP/1.1 connection to the app. CPU is the server-side proxy's, per 1,000 connections."),
        })
        {
            var rows = report.Phases.Where(p => p.Phase == phase).ToList();
            md.AppendLine();
            md.AppendLine(Inv, $"## {title}");
            md.AppendLine();
            md.AppendLine(explain);
            md.AppendLine();
            var timeColumns = phase == DataPlaneRun.NewConnection ? "p50 ms per connection | p99 ms | p50 × HAProxy pair" : "mean ms";
            md.AppendLine(Inv, $"| target | {(phase == DataPlaneRun.NewConnection ? "connections/s" : "req/s")} | × direct | × HAProxy pair | {timeColumns} | errors | proxy CPU s/1000 |");
            md.AppendLine(phase == DataPlaneRun.NewConnection ? "|---|---:|---:|---:|---:|---:|---:|---:|---|" : "|---|---:|---:|---:|---:|---:|---|");
            foreach (var r in rows)
            {
                if (r.Skipped is not null)
                {
                    md.AppendLine(Inv, $"| {r.Target} | skipped: {r.Skipped} |");
                    continue;
                }
                var times = phase == DataPlaneRun.NewConnection
                    ? $"{r.P50Ms.Format("0.00")} | {r.P99Ms.Format("0.00")} | {r.P50VsHaproxy.Format("0.00")}"
                    : r.MeanMs.Format("0.00");
                var cpu = string.Join(", ", r.Processes.Select(p => $"{p.Process} {p.CpuSecondsPer1000Requests.Format("0.000")}"));
                md.AppendLine(Inv, $"| {r.Target} | {r.PerSecond.Format("0")} | {r.VsDirect.Format("0.00")} | {r.VsHaproxy.Format("0.00")} | {times} | {r.Errors.Format("0")} | {(cpu.Length == 0 ? "–" : cpu)} |");
            }
        }
    }

    /// <summary>The sidecar pair against the same stack without our code: how much of the gap to HAProxy is the stack's.</summary>
    public static void AppendStackFloor(StringBuilder md, DataPlaneReport report) => AppendFloor(md, "The sidecar pair against its own stack (bare-stack pair)",
        "`bare-stack-pair` is two `ztm-bare-proxy` processes doing the pair's job with Kestrel, YARP's forwarder, SocketsHttpHandler (HTTP/2 + TLS 1.3 between them, client certificates chained to the mesh CA), a Polly timeout and a prometheus-net counter, and none of our code: no SPIFFE ID check, registry, authorization, rate limits, JWT, metrics per identity or access log. Requests/s of the sidecar pair ÷ the bare pair's (per repetition), and each pair's CPU (its processes added up; new connections: the server side only) per 1,000 requests.",
        "bare pair", report.StackFloor, report.Settings.BarePairSkipped);

    /// <summary>The sidecar pair against the runtime's floor: the cheapest .NET mTLS relay (issue 20).</summary>
    public static void AppendRuntimeFloor(StringBuilder md, DataPlaneReport report) => AppendFloor(md, "The sidecar pair against the runtime's floor (floor-relay pair)",
        "`floor-relay-pair` is two `ztm-floor-relay` processes (`benchmarks/ZeroTrustMesh.FloorRelay`, NativeAOT, the sidecar's GC settings): plaintext in, `Socket` + `SslStream` (TLS 1.3, client SVID, chain checked against the mesh CA once per connection) between them, bytes copied out to the app, one connection out per connection in, nothing parsed. It is the least any .NET program pays here for the transport part of the pair's job; it serves HTTP/1.1 capacity, the 1000 req/s rate, HTTP/2 (h2c bytes relayed to the app's protocol-detecting port) and new connections, not gRPC (one upstream port). Ratios per repetition, then median (min..max): requests/s and CPU per request of the sidecar pair ÷ the floor pair's; at the rate phase CPU per 1,000 requests is vCPU.",
        "floor pair", report.RuntimeFloor, report.Settings.FloorPairSkipped);

    /// <summary>The sidecar pair in L4 mode against the runtime's floor: what is left of the gap without HTTP parsing.</summary>
    public static void AppendL4Floor(StringBuilder md, DataPlaneReport report) => AppendFloor(md, "The L4 sidecar pair against the runtime's floor (ztm-sidecar-pair-l4 ÷ floor-relay pair)",
        "`ztm-sidecar-pair-l4` is the sidecar pair with the control plane's `--l4-mode on` and a policy on the caller's identity only, so the app port is relayed as bytes after the mTLS check (authorized once per connection). Its client dials the service address from inside a network namespace whose iptables rule captures the connection into the frontend sidecar (L4 needs the connection before any HTTP); wrk runs there with `ip netns exec`, the in-process client with sockets made in that namespace. Measured for HTTP/1.1 capacity, the 1000 req/s rate and idle memory. In the columns below \"sidecar pair\" is the L4 pair.",
        "floor pair", report.L4Floor, report.Settings.L4Skipped ?? report.Settings.FloorPairSkipped);

    private static void AppendFloor(StringBuilder md, string title, string explain, string floorName, IReadOnlyList<FloorComparisonJson> rows, string? skipped)
    {
        md.AppendLine();
        md.AppendLine(Inv, $"## {title}");
        md.AppendLine();
        if (rows.Count == 0)
        {
            md.AppendLine(Inv, $"Not measured: {skipped ?? $"the {floorName} or the sidecar pair has no runs"}.");
            return;
        }
        md.AppendLine(explain);
        md.AppendLine();
        md.AppendLine(Inv, $"| phase | sidecar pair × {floorName}, req/s | CPU s/1000 req: sidecar pair | {floorName} | HAProxy pair | sidecar ÷ {floorName} CPU per request |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var f in rows)
        {
            md.AppendLine(Inv, $"| {f.Phase} | {f.SidecarVsFloor.Format("0.00")} | {f.SidecarPairCpu.Format("0.000")} | {f.FloorPairCpu.Format("0.000")} | {f.HaproxyPairCpu.Format("0.000")} | {f.CpuVsFloor.Format("0.00")} |");
        }
    }

    public static void AppendStartup(StringBuilder md, DataPlaneReport report)
    {
        md.AppendLine();
        md.AppendLine("## exec → ready (a fresh proxy instance per repetition)");
        md.AppendLine();
        md.AppendLine("Milliseconds from starting the process to ready: the sidecar's `/healthz/ready` answering 200 (join token → CSR → SVID signed, policy received; polled every 5 ms); haproxy/nginx (server side, same config as the pair's, a fresh port) answering a first mTLS request with 200 (retried every 5 ms). Median (min..max) over the repetitions.");
        md.AppendLine();
        md.AppendLine("| target | process | ready means | exec → ready ms |");
        md.AppendLine("|---|---|---|---:|");
        foreach (var s in report.Startup)
        {
            md.AppendLine(Inv, $"| {s.Target} | {s.Process} | {s.Ready} | {s.ExecToReadyMs.Format("0")} |");
        }
        if (report.Startup.Count == 0)
        {
            md.AppendLine("| – | none measured | | |");
        }
    }

    public static void AppendIdleMemory(StringBuilder md, DataPlaneReport report)
    {
        md.AppendLine();
        md.AppendLine("## Idle memory: the proxies against the bare NativeAOT stack");
        md.AppendLine();
        md.AppendLine(Inv, $"Read with \"RSS idle\" (after start-up and the probes, before any load; settled: {DataPlaneRun.IdleSettleSeconds} s after the probes, when a quiet sidecar has handed back what they faulted in; 1 s with --quick) from `/proc/<pid>/status`, MiB, with the VmRSS just after the probes (3 s; 0.5 s with --quick) beside it: `RssAnon` is the process's own memory (GC heap, stacks, NativeAOT's rehydrated data, malloc), `RssFile` the pages of its executable and shared libraries that are mapped in (page cache, shareable; the kernel maps ahead around each fault), `RssShmem` shared memory (a JIT build's double-mapped code, haproxy's shared segments; VmRSS is the sum of the three). `bare-stack` is `ztm-bare-proxy` (`benchmarks/ZeroTrustMesh.BareProxy`): NativeAOT Kestrel core + YARP's forwarder through one `HttpMessageInvoker` in a Polly timeout + one prometheus-net counter + an uncalled `GrpcChannel`, with the sidecar's GC and trimming settings and none of our code; it forwarded one request to the app and served `/metrics` once, then idled. Binary: the running executable's size (– for a .dll run with dotnet).");
        md.AppendLine();
        if (report.Settings.BareProxySkipped is { } skipped)
        {
            md.AppendLine(Inv, $"**Bare stack skipped: {skipped}**");
            md.AppendLine();
        }
        md.AppendLine("| target | process | VmRSS | VmRSS just after the probes | RssAnon | RssFile | RssShmem | binary MiB | VmRSS × bare | more than bare: VmRSS / RssAnon / RssFile |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var m in report.IdleMemory)
        {
            var over = double.IsNaN(m.VmRssVsBare) || m.Target == DataPlaneReport.Bare ? "–"
                : string.Create(Inv, $"{m.VmRssOverBareMb:+0.0;-0.0} / {m.RssAnonOverBareMb:+0.0;-0.0} / {m.RssFileOverBareMb:+0.0;-0.0}");
            md.AppendLine(Inv, $"| {m.Target} | {m.Process} | {m.VmRssMb:0.0} | {m.VmRssAfterProbesMb:0.0} | {m.RssAnonMb:0.0} | {m.RssFileMb:0.0} | {m.RssShmemMb:0.0} | {Figure(m.BinaryMb, "0.0")} | {Figure(m.VmRssVsBare, "0.00")} | {over} |");
        }
    }

    private static string Figure(double value, string format) => double.IsNaN(value) ? "–" : value.ToString(format, Inv);

    public static void AppendControlPlane(StringBuilder md, DataPlaneReport report)
    {
        md.AppendLine();
        md.AppendLine("## Control plane");
        md.AppendLine();
        if (report.ControlPlane is not { } cp)
        {
            md.AppendLine(Inv, $"Skipped: {report.ControlPlaneSkipped ?? "not run"}.");
            return;
        }
        if (cp.Signing is { } sign)
        {
            md.AppendLine(Inv, $"SVID signings over gRPC (`signing-load`, its own control plane, {sign.Concurrency} concurrent renewals over one mTLS connection, {sign.SecondsPerPhase:0.#} s per phase; detail in `{sign.File}` and `.md` beside this report):");
            md.AppendLine();
            md.AppendLine("| signings/s | plain gRPC round trips/s (baseline) | signing ÷ baseline | server CPU µs per signing | errors |");
            md.AppendLine("|---:|---:|---:|---:|---:|");
            md.AppendLine(Inv, $"| {sign.SigningsPerSecond.Format("0")} | {sign.BaselinePerSecond.Format("0")} | {sign.SigningToBaseline.Format("0.000")} | {sign.ServerCpuMicrosPerSigning.Format("0")} | {sign.Errors} |");
        }
        else
        {
            md.AppendLine(Inv, $"Signing: skipped: {cp.SigningSkipped}.");
        }
        md.AppendLine();
        if (cp.Propagation is { } prop)
        {
            md.AppendLine(Inv, $"Policy propagation (`policy-propagation`, simulated sidecars over {prop.Identities} workload SVIDs; detail in `{prop.File}`): time from the Apply response to each sidecar reading the new version — p50 and p99 over the N sidecars per change, then median (min..max) over the changes; control-plane memory per connected sidecar = (RSS with N connected − RSS before the streams) / N. Control plane RSS idle {prop.RssIdleMb:0.0} MiB; failed streams: {prop.FailedStreams}.");
            md.AppendLine();
            md.AppendLine("| sidecars | changes | p50 ms | p99 ms | all ACKed (Status) ms | RSS connected MiB | KiB per sidecar |");
            md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var l in prop.Levels)
            {
                md.AppendLine(Inv, $"| {l.Sidecars:N0} | {l.Changes} | {l.P50Ms.Format("0")} | {l.P99Ms.Format("0")} | {l.AllAckedMs.Format("0")} | {l.RssConnectedMb:0.0} | {l.KibPerSidecar:0.0} |");
            }
        }
        else
        {
            md.AppendLine(Inv, $"Propagation: skipped: {cp.PropagationSkipped}.");
        }
    }
}
