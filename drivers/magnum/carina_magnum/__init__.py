"""rax.carina as an OpenStack Magnum driver: Magnum accepts the request, carina's runner makes the cluster."""
