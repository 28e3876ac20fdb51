from rlhf_plug.cli import main

raise SystemExit(main())
