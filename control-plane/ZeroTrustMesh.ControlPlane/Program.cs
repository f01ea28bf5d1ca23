using ZeroTrustMesh.CommandLine;
using ZeroTrustMesh.ControlPlane;

return CommandLineOptions.Run(ControlPlaneOptions.Command(ControlPlaneHost.RunAsync), args);
