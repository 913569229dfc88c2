"""The production shape on one machine: HAProxy for the ALB, replicas (the real gateway in
front of an engine), and an autoscaler executing the policy as compiled for AWS."""
