using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.DemoApp;

return CommandLineOptions.Run(DemoOptions.Command(DemoHost.RunAsync), args);
