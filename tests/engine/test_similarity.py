"""engine/similarity.py: when a group of hits is unlike anything of the query's kind."""


def test_a_group_of_only_unlike_hits_gets_a_note():
    """All hits below the 5th percentile of typical near-neighbour similarity (e.g. the
    other instrument's 'nearest' spectra in a store without the query's kind): said under
    the CLI's table (and in the app); one alike hit, or a hit without a percentile, and no
    note."""
    from types import SimpleNamespace

    from engine.hit_table import grouped_tables
    from engine.similarity import UNLIKE_NOTE, all_unlike

    assert all_unlike([0.0, 0.01, 0.049]) and not all_unlike([0.0, 0.2])
    assert not all_unlike([]) and not all_unlike([0.0, None])

    def hit(survey, pct):
        return SimpleNamespace(survey=survey, object_id="1", score=-0.2, payload={},
                               similarity_percentile=pct, space="shared")
    text = grouped_tables([hit("gaia_xp", 0.9), hit("lamost", 0.0), hit("lamost", 0.02)])
    xp, lamost = text.split("\n\n")
    assert UNLIKE_NOTE in lamost and UNLIKE_NOTE not in xp
