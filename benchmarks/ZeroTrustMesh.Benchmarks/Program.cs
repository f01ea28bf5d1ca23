using BenchmarkDotNet.Running;
using ZeroTrustMesh.Benchmarks.Load;
using ZeroTrustMesh.CommandLine;

// 'signing-load ...' drives the real control plane; 'policy-propagation ...' pushes policy changes to simulated sidecars; 'dataplane-load ...' the sidecar pair against direct, HAProxy and nginx, then both control-plane harnesses; 'idle-rss ...' an idle sidecar's memory over a minute; anything else goes to BenchmarkDotNet
// (e.g. '--filter *' or '--filter *SigningBenchmarks*').
if (args is ["signing-load", .. var rest])
{
    return CommandLineOptions.Run(SigningLoad.Command(), rest);
}
if (args is ["policy-propagation", .. var propagationArgs])
{
    return CommandLineOptions.Run(PolicyPropagation.Command(), propagationArgs);
}
if (args is ["discovery-accuracy", .. var discoveryArgs])
{
    return CommandLineOptions.Run(ZeroTrustMesh.Benchmarks.Discovery.TemplateAccuracy.Command(), discoveryArgs);
}
if (args is ["idle-rss", .. var idleArgs])
{
    return CommandLineOptions.Run(IdleRss.Command(), idleArgs);
}
if (args is ["dataplane-load", .. var dataPlaneArgs])
{
    return CommandLineOptions.Run(DataPlaneLoad.Command(), dataPlaneArgs);
}
BenchmarkSwitcher.FromAssembly(typeof(SigningLoad).Assembly).Run(args);
return 0;
