"""Pure logic: parsing, desired state, diffs and decisions. Imports no adapter library."""
