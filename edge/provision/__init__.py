"""Giving a device its identity: config, TLS key and certificate, event-signing key.

``template`` fills config.example.toml for one device; ``pki`` makes keys and CSRs and checks
a signed certificate; ``device`` provisions the machine it runs on (``alpr-edge provision``);
``batch`` turns a CSV of poles into one bundle per device; ``firstboot`` applies a bundle
found on the boot partition (``alpr-edge firstboot``); ``files`` writes atomically under a
root directory; ``commands`` registers the CLI subcommands.
"""
