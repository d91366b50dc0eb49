from tattletail.cli import main

raise SystemExit(main())
