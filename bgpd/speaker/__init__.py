"""The BGP speaker: ExaBGP as a supervised child process behind a typed interface.

``config`` renders ExaBGP's configuration (pure), ``codec`` reads its API lines and writes
its commands (pure), ``pacing`` turns Adj-RIB-Out changes into safe command batches (pure),
``supervisor`` runs and watches the process, ``bridge`` is ExaBGP's API process.
"""
