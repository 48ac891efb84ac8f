"""Development tooling of the callback platform: the local infrastructure (``callback-infra``,
the tests' fixtures), the SecantusDB launcher and the AsyncAPI document generator. A workspace
member of the development group only: no service image installs it."""
