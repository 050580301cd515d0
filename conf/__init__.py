"""The YAML configs, shipped inside the installed package as `trainctl.conf` (data only, no code)."""
