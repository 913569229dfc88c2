"""The `fleet` command line: one module per subcommand, registered in `main`."""
