"""The losses and KL controllers the ``ppo`` stage takes as components (``loss:``, ``kl:``)."""
