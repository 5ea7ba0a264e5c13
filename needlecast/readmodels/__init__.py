"""Read models: what the faces show, built once (segment summaries, campaign overviews, report tables)."""
