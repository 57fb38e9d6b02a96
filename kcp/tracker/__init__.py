"""Per-cluster accessor: keys, certificates, workload clients, health, eviction."""
