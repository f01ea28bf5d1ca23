namespace ZeroTrustMesh.Sidecar.Tests;

[Collection(nameof(MemoryTrimmerTests))] // changes this process's environment: nothing runs beside it
public sealed class RuntimeDefaultsTests
{
    [Theory]
    [InlineData(null, "16")]
    [InlineData("", "16")]
    [InlineData("4", "4")] // an operator's own setting wins
    public void The_shared_array_pool_is_bounded_unless_the_environment_says_otherwise(string? given, string expected)
    {
        var saved = Environment.GetEnvironmentVariable(RuntimeDefaults.MaxPooledArraysPerCore);
        try
        {
            Environment.SetEnvironmentVariable(RuntimeDefaults.MaxPooledArraysPerCore, given);
            RuntimeDefaults.Apply();
            Assert.Equal(expected, Environment.GetEnvironmentVariable(RuntimeDefaults.MaxPooledArraysPerCore));
        }
        finally
        {
            Environment.SetEnvironmentVariable(RuntimeDefaults.MaxPooledArraysPerCore, saved);
        }
    }
}
