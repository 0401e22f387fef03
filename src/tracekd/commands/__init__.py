"""One module per ``tracekd`` subcommand (see ``tracekd.cli``)."""
