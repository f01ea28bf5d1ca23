namespace ZeroTrustMesh.Chart.Tests.Infrastructure;

/// <summary>The renders most tests look at, each made once per test run.</summary>
internal static class Renders
{
    public const string DefaultVariant = "default values";
    public const string AllFeaturesVariant = "every feature on (fixture dashboards and rules)";
    public const string ChartFilesVariant = "every feature on (the chart's own dashboards and rules)";

    private static readonly Lazy<Task<RenderedChart>> DefaultRender = new(() => RenderedChart.RenderAsync(Helm.ChartDirectory));
    private static readonly Lazy<Task<RenderedChart>> AllFeaturesRender = new(RenderAllFeaturesAsync);
    private static readonly Lazy<Task<RenderedChart>> ChartFilesRender = new(RenderChartFilesAsync);

    public static string AllFeaturesValues => File.ReadAllText(Path.Combine(Helm.FixturesDirectory, "values", "all-features.yaml"));

    public static Task<RenderedChart> Default => DefaultRender.Value;

    /// <summary>A copy of the chart with the fixture dashboards and rules, every optional feature on.</summary>
    public static Task<RenderedChart> AllFeatures => AllFeaturesRender.Value;

    public static Task<RenderedChart> Get(string variant) => variant switch
    {
        DefaultVariant => Default,
        AllFeaturesVariant => AllFeatures,
        ChartFilesVariant => ChartFilesRender.Value,
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, null),
    };

    public static TheoryData<string> Variants => [DefaultVariant, AllFeaturesVariant, ChartFilesVariant];

    private static async Task<RenderedChart> RenderAllFeaturesAsync()
    {
        using var copy = ChartCopy.Create();
        return await RenderedChart.RenderAsync(copy.Directory, valuesYaml: AllFeaturesValues);
    }

    /// <summary>
    /// The chart as it is, every feature on, so that the dashboards and rules the chart ships (owned by the metrics work)
    /// are held to the same checks; the PrometheusRule only when the chart has its rules file.
    /// </summary>
    private static Task<RenderedChart> RenderChartFilesAsync()
    {
        var values = AllFeaturesValues;
        if (!File.Exists(Path.Combine(Helm.ChartDirectory, "rules", "ztm-alerts.yaml")))
        {
            values = values.Replace("prometheusRule: {enabled: true", "prometheusRule: {enabled: false", StringComparison.Ordinal);
        }
        return RenderedChart.RenderAsync(Helm.ChartDirectory, valuesYaml: values);
    }
}
