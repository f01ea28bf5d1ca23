using System.Globalization;
using System.Text;

namespace ZeroTrustMesh.Policy.Tests.ApiSpec;

/// <summary>
/// The bookshop's order, as the load harness's catalog ApiSpec declares it: its JSON Schema (<c>$ref</c>s into
/// <c>$defs</c>, nested objects, an array of lines, <c>additionalProperties: false</c>, a <c>["string", "null"]</c> type)
/// and a 4,096-byte body. One file, compiled into the Policy and Sidecar tests and the benchmarks (linked), so that the
/// tests guard what the benchmarks measure.
/// </summary>
internal static class BookOrder
{
    public const string Schema = """
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/NewOrder",
         "$defs": {
           "NewOrder": {"type": "object", "additionalProperties": false, "required": ["bookId", "quantity", "shipping", "lines"],
             "properties": {
               "bookId": {"type": "integer", "minimum": 1}, "quantity": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10},
               "note": {"type": ["string", "null"], "maxLength": 200}, "shipping": {"$ref": "#/$defs/Address"},
               "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}}},
           "Address": {"type": "object", "required": ["street", "city"], "properties": {"street": {"type": "string", "minLength": 1}, "city": {"type": "string", "minLength": 1}}},
           "Line": {"type": "object", "required": ["bookId", "quantity"], "properties": {"bookId": {"type": "integer", "minimum": 1}, "quantity": {"type": "integer", "minimum": 1}, "title": {"type": "string"}}}}}
        """;

    /// <summary>A 4 KiB order: valid, or with every seventh line's bookId negative and the quantity over the limit.</summary>
    public static byte[] Body(bool valid)
    {
        var text = new StringBuilder($$"""{"bookId": 7, "quantity": {{(valid ? 2 : 10)}}, "note": null, "shipping": {"street": "1 Main St", "city": "Springfield"}, "lines": [""");
        for (var i = 1; text.Length < 4 * 1024 - 80; i++)
        {
            text.Append(i == 1 ? "" : ", ").Append(CultureInfo.InvariantCulture, $$"""{"bookId": {{(valid || i % 7 != 0 ? i : -i)}}, "quantity": 1, "title": "Book number {{i}}"}""");
        }
        text.Append("]}");
        while (text.Length < 4 * 1024)
        {
            text.Append(' ');
        }
        return Encoding.UTF8.GetBytes(text.ToString());
    }
}
