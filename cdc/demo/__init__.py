"""``cdc demo``: the demo platform, its workload, and a throwaway PostgreSQL to run them on."""
