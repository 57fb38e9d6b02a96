//go:build tools

// Package tools records the Cluster API main packages this module builds
// (core, the kubeadm bootstrap provider, the kubeadm control plane) so that
// `go mod tidy` keeps their dependencies in go.sum.
package tools

import (
	_ "sigs.k8s.io/cluster-api"
	_ "sigs.k8s.io/cluster-api/bootstrap/kubeadm"
	_ "sigs.k8s.io/cluster-api/controlplane/kubeadm"
)
