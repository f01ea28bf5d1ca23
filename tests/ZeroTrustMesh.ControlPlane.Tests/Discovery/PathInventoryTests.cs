using ZeroTrustMesh.ControlPlane.Discovery;

namespace ZeroTrustMesh.ControlPlane.Tests.Discovery;

/// <summary>Path templating: which positions become parameters, and which values stay words.</summary>
public sealed class PathInventoryTests
{
    [Theory]
    [InlineData("42", true)]
    [InlineData("3fa85f64-5717-4562-b3fc-2c963f66afa6", true)]
    [InlineData("da39a3ee5e6b4b0d3255bfef95601890afd80709", true)] // a commit SHA
    [InlineData("Iv1.8a61f9b3a7aba766", true)] // a client id
    [InlineData("usr9f3k2m7q", true)] // a mixed token
    [InlineData("v1", false)]
    [InlineData("v2.1", false)]
    [InlineData("oauth2", false)]
    [InlineData("sha256", false)]
    [InlineData("users-28-day", false)] // words and a number joined: the counts judge it, not its shape
    [InlineData("release-2024", false)]
    [InlineData("decade", false)] // hex letters only, no digit
    [InlineData("orders", false)]
    public void Identifiers_by_shape(string segment, bool identifier) => Assert.Equal(identifier, SegmentShape.IsIdentifier(segment));

    [Fact]
    public void Numbers_uuids_and_shas_are_parameters_at_once()
    {
        var inventory = new PathInventory(new PathInventoryOptions());
        inventory.Observe("GET", "/orders/17");
        inventory.Observe("GET", "/orders/3fa85f64-5717-4562-b3fc-2c963f66afa6");
        inventory.Observe("GET", "/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709");

        Assert.Equal(["GET /commits/{} 1", "GET /orders/{} 2"], Describe(inventory));
    }

    [Fact]
    public void Many_rare_values_below_a_literal_become_a_parameter_and_a_repeated_vocabulary_does_not()
    {
        var inventory = new PathInventory(new PathInventoryOptions());
        foreach (var user in Users(12))
        {
            inventory.Observe("GET", $"/users/{user}");
            inventory.Observe("GET", $"/users/{user}/repos");
        }
        // /user/...: a dozen words, each requested again and again — the vocabulary of an API, not identifiers.
        string[] words = ["emails", "keys", "repos", "orgs", "teams", "issues", "followers", "following", "starred", "blocks", "gists", "installations"];
        for (var i = 0; i < 4; i++)
        {
            foreach (var word in words)
            {
                inventory.Observe("GET", $"/user/{word}");
            }
        }

        var templates = Describe(inventory);

        Assert.Contains("GET /users/{} 12", templates);
        Assert.Contains("GET /users/{}/repos 12", templates);
        Assert.All(words, word => Assert.Contains($"GET /user/{word} 4", templates));
        Assert.Equal(2 + words.Length, templates.Count);
    }

    [Fact]
    public void Too_few_values_below_a_literal_stay_literal()
    {
        var inventory = new PathInventory(new PathInventoryOptions());
        foreach (var user in Users(9))
        {
            inventory.Observe("GET", $"/users/{user}");
        }

        Assert.Equal(9, inventory.Operations().Count);
    }

    [Fact]
    public void Below_a_parameter_words_recur_across_instances_and_identifiers_belong_to_one()
    {
        var inventory = new PathInventory(new PathInventoryOptions());
        var owners = Users(90).ToList();
        for (var i = 0; i < 30; i++)
        {
            // Many callers, each seen once at /repos/{owner}: the owner position is a parameter by its rare values.
            inventory.Observe("GET", $"/repos/{owners[i]}/{owners[i]}-site/pulls");
            inventory.Observe("GET", $"/repos/{owners[30 + i]}/{owners[30 + i]}-api/issues");
            inventory.Observe("GET", $"/repos/{owners[60 + i]}/{owners[60 + i]}-app/branches/{owners[i]}-feature");
        }

        Assert.Equal(["GET /repos/{}/{}/branches/{} 30", "GET /repos/{}/{}/issues 30", "GET /repos/{}/{}/pulls 30"], Describe(inventory));
    }

    [Fact]
    public void A_popular_identifier_joins_the_parameter_when_what_follows_it_is_what_follows_the_parameter()
    {
        var inventory = new PathInventory(new PathInventoryOptions());
        var owners = Users(60).ToList();
        for (var i = 0; i < 20; i++)
        {
            inventory.Observe("GET", $"/repos/{owners[i]}/{owners[i]}-site/issues");
            // "dotfiles" is a repository many owners have: it recurs below the owner as a word would.
            inventory.Observe("GET", $"/repos/{owners[20 + i]}/dotfiles/issues");
            inventory.Observe("GET", $"/repos/{owners[40 + i]}/dotfiles/pulls");
        }

        Assert.Equal(["GET /repos/{}/{}/issues 40", "GET /repos/{}/{}/pulls 20"], Describe(inventory));
    }

    [Fact]
    public void A_word_beside_a_parameter_stays_a_word()
    {
        var inventory = new PathInventory(new PathInventoryOptions());
        var orgs = Users(60).ToList();
        for (var i = 0; i < 30; i++)
        {
            inventory.Observe("GET", $"/orgs/{orgs[i]}/secrets/{orgs[i].ToUpperInvariant()}_TOKEN");
            inventory.Observe("GET", $"/orgs/{orgs[30 + i]}/secrets/public-key");
        }

        Assert.Equal(["GET /orgs/{}/secrets/public-key 30", "GET /orgs/{}/secrets/{} 30"], Describe(inventory));
    }

    [Fact]
    public void A_caller_that_requests_every_path_often_is_not_told_from_a_word_without_a_pin()
    {
        // The limit of counting: below a literal, a value requested three times or more looks like a word. A handful of
        // very active callers stays literal until an operator pins the position.
        var pinned = new PathInventory(new PathInventoryOptions { Pins = ["/accounts/{account}"] });
        var unpinned = new PathInventory(new PathInventoryOptions());
        foreach (var account in Users(12))
        {
            for (var i = 0; i < 3; i++)
            {
                pinned.Observe("GET", $"/accounts/{account}/balance");
                unpinned.Observe("GET", $"/accounts/{account}/balance");
            }
        }

        Assert.Equal(["GET /accounts/{}/balance 36"], Describe(pinned));
        Assert.Equal(12, unpinned.Operations().Count);
    }

    [Fact]
    public void Pins_make_a_parameter_of_few_values_and_keep_a_word_among_many()
    {
        var inventory = new PathInventory(new PathInventoryOptions { Pins = ["/tenants/{tenant}", "/users/me"] });
        inventory.Observe("GET", "/tenants/acme");
        inventory.Observe("GET", "/tenants/globex");
        foreach (var user in Users(12))
        {
            inventory.Observe("GET", $"/users/{user}");
        }
        inventory.Observe("GET", "/users/me");

        Assert.Equal(["GET /tenants/{} 2", "GET /users/me 1", "GET /users/{} 12"], Describe(inventory));
    }

    [Fact]
    public void Memory_is_bounded_and_what_did_not_fit_is_counted()
    {
        var inventory = new PathInventory(new PathInventoryOptions { MaxNodes = 100 });
        for (var i = 0; i < 1000; i++)
        {
            inventory.Observe("GET", $"/files/name-{(char)('a' + (i % 26))}{i / 26}x/{i}");
        }

        Assert.True(inventory.Dropped > 0);
        Assert.Equal(1000, inventory.Operations().Sum(o => o.Requests) + inventory.Dropped);
    }

    [Fact]
    public void A_place_with_more_values_than_it_keeps_takes_the_rest_as_a_parameter_instead_of_dropping_paths()
    {
        // The GitHub shape the accuracy benchmark missed: thousands of organizations filled the trie, and the few requests
        // to /orgs/{org}/insights/api/time-stats/{actor_type}/{actor_id} that came later were dropped, a shadow endpoint with them.
        var inventory = new PathInventory(new PathInventoryOptions { MaxNodes = 300, MaxValuesPerPosition = 32 });
        var orgs = Users(1005).ToList();
        foreach (var org in orgs.Take(1000))
        {
            inventory.Observe("GET", $"/orgs/{org}/repos");
        }
        foreach (var (org, i) in orgs.Skip(1000).Select((o, i) => (o, i)))
        {
            // Kept as the trie holds it: the organization past the bound as a parameter.
            Assert.Equal($"/orgs/{{}}/insights/api/time-stats/classic_pat/{1000 + i}", inventory.Keep("GET", $"/orgs/{org}/insights/api/time-stats/classic_pat/{1000 + i}"));
        }

        Assert.Equal(0, inventory.Dropped);
        Assert.Equal(["GET /orgs/{}/insights/api/time-stats/classic_pat/{} 5", "GET /orgs/{}/repos 1000"], Describe(inventory));
    }

    [Fact]
    public void A_word_first_seen_after_its_place_filled_up_still_becomes_a_word()
    {
        var inventory = new PathInventory(new PathInventoryOptions { MaxValuesPerPosition = 16 });
        for (var i = 0; i < 40; i++)
        {
            inventory.Observe("GET", $"/orgs/acme/actions/secrets/{Users(40).ElementAt(i).ToUpperInvariant()}_TOKEN");
        }
        for (var i = 0; i < 6; i++)
        {
            inventory.Observe("GET", "/orgs/acme/actions/secrets/public-key");
        }

        // The first two requests went under the parameter; from the third on it has its own node (and, seen more than
        // three times, it is no popular identifier beside the parameter).
        Assert.Equal(["GET /orgs/acme/actions/secrets/public-key 4", "GET /orgs/acme/actions/secrets/{} 42"], Describe(inventory));
        Assert.Equal("/orgs/acme/actions/secrets/public-key", PathInventory.TemplateOf("/orgs/acme/actions/secrets/public-key", inventory.Operations()));
    }

    [Fact]
    public void Below_many_parents_kept_as_one_a_word_requested_again_and_again_stays_a_word()
    {
        // Past the bound the organizations share one node, which cannot say how many parents a value was seen under;
        // counted by requests there, public-key is a word and the secret names are a parameter (not over-merged).
        var inventory = new PathInventory(new PathInventoryOptions { MaxValuesPerPosition = 16 });
        foreach (var (org, i) in Users(200).Select((o, i) => (o, i)))
        {
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/public-key");
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/{Users(200).ElementAt(199 - i).ToUpperInvariant()}_TOKEN");
        }

        Assert.Equal(["GET /orgs/{}/actions/secrets/public-key 200", "GET /orgs/{}/actions/secrets/{} 200"], Describe(inventory));
    }

    [Fact]
    public void Below_many_parents_kept_as_one_each_request_counts_as_one_parent_not_two()
    {
        // The accuracy benchmark's splits on seeds 1, 2 and 4: past the bound the organizations share one {} node, and a
        // secret name requested under three of them was counted as seen under four parents (the node itself and its three
        // requests), more than a popular identifier may be. It stayed a literal beside /secrets/{}: one endpoint split in two.
        var inventory = new PathInventory(new PathInventoryOptions { MaxValuesPerPosition = 16 });
        var orgs = Users(27).ToList();
        foreach (var (org, i) in orgs.Take(24).Select((o, i) => (o, i)))
        {
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/public-key");
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/{orgs[23 - i].ToUpperInvariant()}_TOKEN");
        }
        foreach (var org in orgs.Skip(24))
        {
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/NPM_TOKEN");
        }

        Assert.Equal(["GET /orgs/{}/actions/secrets/public-key 24", "GET /orgs/{}/actions/secrets/{} 27"], Describe(inventory));
    }

    [Fact]
    public void Below_many_parents_kept_as_one_a_leaf_requested_more_often_than_a_word_needs_stays_a_word()
    {
        // The other side of the count: four requests under the shared node may be four organizations, so public-key,
        // requested only there, is still a word beside the secret names.
        var inventory = new PathInventory(new PathInventoryOptions { MaxValuesPerPosition = 16 });
        var orgs = Users(24).ToList();
        foreach (var (org, i) in orgs.Select((o, i) => (o, i)))
        {
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/{orgs[23 - i].ToUpperInvariant()}_TOKEN");
        }
        foreach (var org in orgs.Skip(16).Take(4))
        {
            inventory.Observe("GET", $"/orgs/{org}/actions/secrets/public-key");
        }

        Assert.Equal(["GET /orgs/{}/actions/secrets/public-key 4", "GET /orgs/{}/actions/secrets/{} 24"], Describe(inventory));
    }

    [Fact]
    public void Templates_are_named_after_the_word_before_each_parameter()
    {
        Assert.Equal("/users/{user}/keys/{key}", PathInventory.Named("/users/{}/keys/{}"));
        Assert.Equal("/repos/{repo}/{param}/pulls", PathInventory.Named("/repos/{}/{}/pulls"));
        Assert.Equal("/{param}", PathInventory.Named("/{}"));
    }

    [Fact]
    public void A_path_falls_under_the_template_with_the_leftmost_literal()
    {
        IReadOnlyList<ObservedOperation> operations =
        [
            new("GET", "/users/{}", 1), new("GET", "/users/me", 1), new("GET", "/{}/me", 1),
        ];

        Assert.Equal("/users/me", PathInventory.TemplateOf("/users/me", operations));
        Assert.Equal("/users/{}", PathInventory.TemplateOf("/users/ann", operations));
        Assert.Equal("/{}/me", PathInventory.TemplateOf("/groups/me", operations));
        Assert.Null(PathInventory.TemplateOf("/groups/ann/x", operations));
    }

    private static List<string> Describe(PathInventory inventory) =>
        [.. inventory.Operations().Select(o => $"{o.Method} {o.Template} {o.Requests}")];

    /// <summary>Made-up logins, distinct and not identifier-shaped.</summary>
    private static IEnumerable<string> Users(int count) =>
        Enumerable.Range(0, count).Select(i => string.Concat("kolamiraneto".Substring(i % 6, 3), "vizu"[i % 4], new string((char)('a' + i % 26), 1 + i / 26), "son"));
}
