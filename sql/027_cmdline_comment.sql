-- netlens migration 27: processes.cmdline's comment states what `capture --cmdline full|name|none`
-- keeps. Migration 1's comment predates the option and says the whole command line is stored,
-- which since the option came is true only with `--cmdline full`.

COMMENT ON COLUMN processes.cmdline IS 'Command line as the capture kept it (capture --cmdline): with name, the default, the program only (the first word, no argument: arguments can carry secrets); with full, every argument joined by single spaces; with none, NULL. NULL also when unreadable or empty. Rows stored by a netlens from before the option hold full command lines.';
