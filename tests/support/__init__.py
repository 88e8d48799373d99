"""What the tests and the benchmarks share: process probes (``processes``), network
namespaces and what runs in them (``netns``), host ports (``ports``), fake helpers
(``fakes``) and the options builder (``options``)."""
