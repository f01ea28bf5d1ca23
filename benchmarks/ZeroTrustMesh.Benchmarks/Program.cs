using BenchmarkDotNet.Running;
using ZeroTrustMesh.Benchmarks.Load;
using ZeroTrustMesh.CommandLine;

// 'signing-load ...' drives the real control plane; anything else goes to BenchmarkDotNet
// (e.g. '--filter *' or '--filter *SigningBenchmarks*').
if (args is ["signing-load", .. var rest])
{
    return CommandLineOptions.Run(SigningLoad.Command(), rest);
}
BenchmarkSwitcher.FromAssembly(typeof(SigningLoad).Assembly).Run(args);
return 0;
