"""The KubeadmControlPlane reconciler (issue 6)."""
