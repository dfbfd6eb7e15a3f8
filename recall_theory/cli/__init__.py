"""The ``recall-theory`` command line: one module per subcommand, registered in main."""
