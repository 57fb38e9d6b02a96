"""Real local infrastructure for tests and `kcp dev`: never imported by product code.

`LocalControlPlane` runs a real kube-apiserver backed by a real etcd on loopback;
`EtcdCluster` runs real etcd members with mutual TLS for simulated workload clusters.
"""
