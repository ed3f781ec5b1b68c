"""Parts of check.py: render (kustomize subset), schemas, policy, selftest."""
