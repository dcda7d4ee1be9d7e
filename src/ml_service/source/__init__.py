"""Where export files come from: an HTTP pull from Totara or a local export folder."""
