using ZeroTrustMesh.Cli;
using ZeroTrustMesh.CommandLine;

return CommandLineOptions.Run(Ztmctl.Command(), args);
