from ufence.cli import main

raise SystemExit(main())
