//! The `hashrig` command line: subcommands over the engine. Kept thin.
