"""Reports for people: the candidates summary (markdown and JSON) and the plots."""
