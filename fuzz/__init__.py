"""sdpa-fuzz: where torch.compile changes what a program calling SDPA does.

`fuzz.api` is the public API for properties of one's own; `fuzz.plugin` the pytest plugin;
`fuzz.cli` the command line. docs/architecture.md lays out the rest.
"""
