using System.Text.Json;
using Grpc.Core;
using Xunit.Abstractions;
using ZeroTrustMesh.EndToEnd.Tests.Infrastructure;
using ZeroTrustMesh.Proto.V1;

namespace ZeroTrustMesh.EndToEnd.Tests;

/// <summary>
/// The control plane's policy store through real processes: a malformed file (in the watched directory or through
/// <c>ztmctl apply</c>) is refused with its name and line and never takes the control plane down; empty and
/// oversized applies are refused saying why; kinds are case-insensitive, singular or plural, as with kubectl.
/// </summary>
public sealed class PolicyDirectoryEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    /// <summary>The file from the issue: a flow mapping left open, which YamlDotNet's scanner fails on with an InvalidOperationException.</summary>
    private const string UnclosedFlowMapping = """
        apiVersion: security.ztm.dev/v1
        kind: AuthorizationPolicy
        metadata: {name: x, namespace: shop
        spec: {}

        """;

    private readonly TestMesh _mesh = new(output);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    [Fact]
    public async Task A_malformed_policy_file_is_refused_with_its_name_and_line_and_the_last_good_set_stays_across_a_restart()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        var good = await controlPlane.AllowNamespaceAsync("orders");

        // Dropped into the watched directory: one line naming the file and the line; the process lives on with the set it had.
        var mark = controlPlane.Process.LineCount;
        await File.WriteAllTextAsync(Path.Combine(controlPlane.DataDir, "policies", "zz-bad.yaml"), UnclosedFlowMapping);
        var logged = await controlPlane.Process.WaitForLineAsync(
            l => l.Contains("zz-bad.yaml line ", StringComparison.Ordinal) && l.Contains("invalid YAML", StringComparison.Ordinal), "the malformed file, named", after: mark);
        Assert.Contains("the last good set stays", logged, StringComparison.Ordinal);
        await AssertListedAsync(good, "AuthorizationPolicy/shop/orders-from-shop");
        Assert.False(controlPlane.Process.Exited.IsCompleted, "the control plane exited");

        // The same file through ztmctl apply: InvalidArgument naming the file and the line, and nothing applied.
        var file = Path.Combine(_mesh.Root, "zz-bad.yaml");
        await File.WriteAllTextAsync(file, UnclosedFlowMapping);
        var (exit, stdout, stderr) = await _mesh.ZtmctlAsync("apply", "-f", file);
        Assert.Equal(1, exit);
        Assert.Equal("", stdout);
        Assert.StartsWith("ztmctl: ", stderr, StringComparison.Ordinal);
        Assert.Contains("zz-bad.yaml line ", stderr, StringComparison.Ordinal);
        Assert.Contains("invalid YAML", stderr, StringComparison.Ordinal);
        Assert.Contains("(InvalidArgument)", stderr, StringComparison.Ordinal);
        await AssertListedAsync(good, "AuthorizationPolicy/shop/orders-from-shop");

        // A restart with the file still there: the control plane starts, says why the directory is not used, and serves
        // the last good set at the same version (sidecars see nothing change).
        await controlPlane.Process.StopAsync();
        var restarted = await _mesh.StartControlPlaneAsync(name: "controlplane-2", dataDir: controlPlane.DataDir);
        await restarted.Process.WaitForLineAsync("zz-bad.yaml line ");
        await restarted.Process.WaitForLineAsync("serving the last good set, 1 resource(s)");
        await AssertListedAsync(good, "AuthorizationPolicy/shop/orders-from-shop");

        // Fixed in place: the directory is read again, and the set changes to what it now says.
        await File.WriteAllTextAsync(Path.Combine(controlPlane.DataDir, "policies", "zz-bad.yaml"), ControlPlane.AllowNamespaceYaml("payments"));
        await restarted.Process.WaitForLineAsync("directory by watch: AuthorizationPolicy/shop/payments-from-shop");
    }

    [Fact]
    public async Task An_empty_apply_and_one_over_the_size_limit_are_refused_saying_so()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();

        foreach (var (name, text) in new[] { ("empty.yaml", ""), ("comments.yaml", "# nothing here yet\n---\n") })
        {
            var file = Path.Combine(_mesh.Root, name);
            await File.WriteAllTextAsync(file, text);
            var (exit, stdout, stderr) = await _mesh.ZtmctlAsync("apply", "-f", file);
            Assert.Equal(1, exit);
            Assert.Equal("", stdout);
            Assert.Contains($"{name}: no resources in it", stderr, StringComparison.Ordinal);
            Assert.Contains("nothing applied", stderr, StringComparison.Ordinal);
        }

        // 10 MB: ztmctl refuses before sending, naming the limit.
        var huge = Path.Combine(_mesh.Root, "huge.yaml");
        await File.WriteAllTextAsync(huge, "# " + new string('x', 10 * 1024 * 1024) + "\n");
        var (hugeExit, _, hugeError) = await _mesh.ZtmctlAsync("apply", "-f", huge);
        Assert.Equal(1, hugeExit);
        var line = Assert.Single(hugeError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("huge.yaml: 10,485,7", line, StringComparison.Ordinal);
        Assert.Contains("at most 1,048,576 bytes (1 MiB) are accepted per apply", line, StringComparison.Ordinal);

        // Another client sending just over the limit is told the same by the control plane.
        using var channel = controlPlane.Channel(controlPlane.OperatorCertificate);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await new PolicyAdmin.PolicyAdminClient(channel)
            .ApplyAsync(new ApplyRequest { Source = "big.yaml", Yaml = "# " + new string('x', 1024 * 1024) }));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Contains("big.yaml: 1,048,578 bytes of policy; at most 1,048,576 bytes (1 MiB) are accepted per apply", refused.Status.Detail, StringComparison.Ordinal);

        await AssertListedAsync("v0");
    }

    [Fact]
    public async Task Kinds_are_case_insensitive_singular_or_plural_and_what_get_lists_can_be_deleted()
    {
        var controlPlane = await _mesh.StartControlPlaneAsync();
        await controlPlane.AllowNamespaceAsync("orders");

        foreach (var kind in new[] { "AuthorizationPolicy", "authorizationpolicy", "authorizationpolicies", "AUTHORIZATIONPOLICIES" })
        {
            var (exit, listed, _) = await _mesh.ZtmctlAsync("get", kind, "-n", "shop");
            Assert.Equal(0, exit);
            Assert.Contains("orders-from-shop", listed, StringComparison.Ordinal);
        }
        Assert.Equal(0, (await _mesh.ZtmctlAsync("get", "authorizationpolicy", "orders-from-shop", "-n", "shop")).ExitCode);

        var (deleteExit, deleted, _) = await _mesh.ZtmctlAsync("delete", "authorizationpolicy", "orders-from-shop", "-n", "shop");
        Assert.Equal(0, deleteExit);
        Assert.Contains("deleted", deleted, StringComparison.Ordinal);
        var version = deleted.Split('\n').Single(l => l.StartsWith("policy version ", StringComparison.Ordinal))["policy version ".Length..].Trim();
        await AssertListedAsync(version);

        // Now it is gone, and only now is it NotFound; an unknown kind says which kinds there are.
        var (againExit, _, again) = await _mesh.ZtmctlAsync("delete", "AuthorizationPolicies", "orders-from-shop", "-n", "shop");
        Assert.Equal(1, againExit);
        Assert.Contains("AuthorizationPolicy 'shop/orders-from-shop' does not exist (NotFound)", again, StringComparison.Ordinal);
        var (unknownExit, _, unknown) = await _mesh.ZtmctlAsync("get", "authpolicy");
        Assert.Equal(1, unknownExit);
        Assert.Contains("unknown kind 'authpolicy': one of AuthorizationPolicy, RequestAuthentication, PeerAuthentication, RateLimitPolicy", unknown, StringComparison.Ordinal);
    }

    /// <summary><c>ztmctl get -o json</c> shows exactly <paramref name="keys"/> at <paramref name="version"/>.</summary>
    private async Task AssertListedAsync(string version, params string[] keys)
    {
        var (exit, list, _) = await _mesh.ZtmctlAsync("get", "-o", "json");
        Assert.Equal(0, exit);
        var listed = JsonDocument.Parse(list).RootElement;
        Assert.Equal(version, listed.GetProperty("version").GetString());
        Assert.Equal(keys, listed.GetProperty("resources").EnumerateArray().Select(r => r.GetProperty("key").GetString()));
    }
}
