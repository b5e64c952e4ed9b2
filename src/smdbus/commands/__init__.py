"""The ``smd`` subcommands, one module each (see smdbus.cli)."""
