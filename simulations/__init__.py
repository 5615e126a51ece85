"""Planning tools: analytic staffing and virtual-time simulation of the routing engine."""
