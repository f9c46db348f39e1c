"""Built-in workload specs (TOML files beside this module) and prompt synthesis."""

from workloads.spec import Scenario, TokenDist, Workload, builtin_names, load_workload

__all__ = ["Scenario", "TokenDist", "Workload", "builtin_names", "load_workload"]
