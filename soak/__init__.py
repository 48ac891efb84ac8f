"""Soak under chaos: the whole system as processes, a steady mixed load through the HTTP API, a
seeded chaos loop (kill -9 and restart of every service, restarts of Kafka and MongoDB, a
paused scheduler leader), then an invariant auditor over MongoDB and every topic.

``python -m soak`` (``make soak MINUTES=<n>``); the result is ``bench/results/soak.json`` in the
benchmark format. Development tooling: no image installs it.
"""
