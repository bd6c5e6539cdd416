// `mooring` CLI entry point. Subcommands are added by the master work.
console.log('mooring: no commands yet');
