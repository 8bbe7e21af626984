from slr_fast.cli.main import main

raise SystemExit(main())
