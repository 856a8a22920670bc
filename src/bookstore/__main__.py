from bookstore.cli import main

raise SystemExit(main())
